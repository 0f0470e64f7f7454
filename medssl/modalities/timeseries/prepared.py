"""The prepared form of a series dataset: every record's series normalised once, stored as one
NaN-padded (N, C, T) float32 .npy in the cache and served as a read-only memory map.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from medssl.modalities.base import Record, content_key, write_cache_folder
from medssl.modalities.timeseries.discovery import SeriesFile, parse_dataset
from medssl.modalities.timeseries.forecasting import ForecastWindows
from medssl.modalities.timeseries.normalise import normalise
from medssl.modalities.timeseries.readers import CsvOptions
from medssl.modalities.timeseries.series import pack, raise_problems

CACHE_VERSION = 1
log = logging.getLogger(__name__)


class PreparedSeries:
    """Handle on prepared series, in record order.

    values: float32 (N, C, T_max) memory map, NaN after each series' end; lengths (N,);
    labels: int64 (N,) class indices or None; class_names, channel_names;
    stats: the per-channel {"mean", "std"} of dataset normalisation (None otherwise);
    fitted_on: which records the statistics came from ("train", "all" or "none").
    """

    def __init__(self, records: Sequence[Record], root: Path) -> None:
        self.records = list(records)
        self.root = Path(root)
        meta = json.loads((self.root / "meta.json").read_text())
        self.values = np.load(self.root / "values.npy", mmap_mode="r")
        self.lengths = np.load(self.root / "lengths.npy")
        labels = self.root / "labels.npy"
        self.labels = np.load(labels) if labels.exists() else None
        self.class_names: tuple[str, ...] = tuple(meta["class_names"])
        self.channel_names: tuple[str, ...] = tuple(meta["channel_names"])
        self.stats: dict[str, list[float]] | None = meta["stats"]
        self.fitted_on: str = meta["fitted_on"]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def channels(self) -> int:
        """C, the channels of every series (an encoder's in_channels)."""
        return int(self.values.shape[1])

    def series(self, i: int) -> np.ndarray:
        """(C, T_max) float32 copy of record i's normalised series."""
        return np.array(self.values[i], dtype=np.float32)


def cache_key(records: Sequence[Record], preprocessing: BaseModel) -> str:
    """sha256 of the preprocessing, the records and the size / mtime of their source files."""
    payload = {
        "version": CACHE_VERSION,
        "preprocessing": preprocessing.model_dump(mode="json"),
        "records": [[r.image, r.split, r.label] for r in records],
    }
    return content_key(payload, [r.extra.get("source", r.image) for r in records])


def prepare_series(
    records: Sequence[Record], cache_dir: str | Path, preprocessing: Any
) -> PreparedSeries:
    """Read, normalise and cache the records' series once; later calls with the same records,
    files and preprocessing reopen the cache. Raises DataError listing every problem."""
    if not records:
        raise ValueError("prepare_series needs at least one record")
    root = Path(cache_dir) / f"timeseries-{cache_key(records, preprocessing)[:16]}"
    if (root / "meta.json").exists():
        return PreparedSeries(records, root)
    if preprocessing.forecasting is not None:
        arrays = _forecast_arrays(records, preprocessing.forecasting)
    else:
        arrays = _classification_arrays(records, preprocessing)
    _write_atomic(root, arrays, preprocessing)
    return PreparedSeries(records, root)


def _classification_arrays(records: Sequence[Record], cfg: Any) -> dict[str, Any]:
    sources: dict[str, str | None] = {}
    for r in records:
        sources.setdefault(r.extra["source"], r.split)
    files = sorted(
        (SeriesFile(s, split) for s, split in sources.items()), key=lambda f: f.split != "train"
    )
    options = CsvOptions(cfg.csv_layout, cfg.label_column, cfg.id_column, cfg.time_column)
    dataset = parse_dataset(files, options)
    raise_problems(files[0].path, dataset.problems)
    at = {f.path: k for k, f in enumerate(files)}
    chosen, labels = [], []
    for r in records:
        k = at[r.extra["source"]]
        chosen.append(dataset.parsed[k].series[r.extra["item"]])
        file_labels = dataset.labels[k]
        labels.append(-1 if file_labels is None else int(file_labels[r.extra["item"]]))
    # Statistics are fitted in float64, before the values are stored as float32.
    values, lengths = pack(chosen, np.float64)
    train = np.array([r.split == "train" for r in records])
    fitted_on = "train" if cfg.normalisation == "dataset" else "none"
    if cfg.normalisation == "dataset" and not train.any():
        log.warning(
            "%s: no record is marked TRAIN; dataset normalisation statistics are fitted on "
            "every series (use <Name>_TRAIN/_TEST files or per-series normalisation to keep "
            "held-out series out of them)",
            files[0].path,
        )
        train, fitted_on = np.ones(len(records), dtype=bool), "all"
    values, stats = normalise(values, train, cfg.normalisation)
    first = dataset.parsed[0]
    channels = first.channel_names or tuple(str(c) for c in range(values.shape[1]))
    return {
        "values": values,
        "lengths": lengths,
        "labels": None if all(v < 0 for v in labels) else np.array(labels, dtype=np.int64),
        "class_names": list(dataset.class_names),
        "channel_names": list(channels),
        "stats": stats.as_dict() if stats is not None else None,
        "fitted_on": fitted_on,
    }


def _forecast_arrays(records: Sequence[Record], settings: Any) -> dict[str, Any]:
    windows = forecast_windows(records[0].extra["source"], settings)
    chosen = [windows.inputs[r.extra["start"] : r.extra["stop"]].T for r in records]
    values, lengths = pack(chosen)
    return {
        "values": values,
        "lengths": lengths,
        "labels": None,
        "class_names": [],
        "channel_names": [*windows.covariates, *windows.variables],
        "stats": windows.stats.as_dict(),
        "fitted_on": "train",
    }


def forecast_windows(path: str, settings: Any) -> ForecastWindows:
    """The ForecastWindows of a table under the `forecasting` preprocessing settings."""
    return ForecastWindows(
        path,
        target=settings.target,
        mode=settings.mode,
        date_column=settings.date_column,
        split_months=tuple(settings.split_months),
        split_fractions=tuple(settings.split_fractions),
        time_features=settings.time_features,
    )


def _write_atomic(root: Path, arrays: dict[str, Any], preprocessing: BaseModel) -> None:
    meta = {k: arrays[k] for k in ("class_names", "channel_names", "stats", "fitted_on")}
    meta["preprocessing"] = preprocessing.model_dump(mode="json")
    files = {
        "values": arrays["values"].astype(np.float32),
        "lengths": arrays["lengths"],
        "labels": arrays["labels"],
    }
    write_cache_folder(root, files, meta)
