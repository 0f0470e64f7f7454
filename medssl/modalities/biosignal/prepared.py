"""The prepared form of a biosignal dataset: every segment cut, normalised and stored once as one
(N, leads, samples) float32 .npy in the cache, served as a read-only memory map."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.base import Record, content_key, write_cache_folder
from medssl.modalities.biosignal.filters import zscore
from medssl.modalities.biosignal.preprocessing import BiosignalPreprocessing, Cleaned
from medssl.platform.errors import DataError

CACHE_VERSION = 1


class PreparedWindows:
    """Handle on prepared segments, in record order.

    values: float32 (N, C, L) memory map; labels: float64 (N,) with NaN where a segment has
    none (None when no segment has one), `integer_labels` when all are whole class numbers;
    subjects: int64 (N,) participant index (`participants` names them); positions: (N,)
    segment centre / record duration; fs, leads, units of every segment.
    """

    def __init__(self, records: Sequence[Record], root: Path) -> None:
        self.records = list(records)
        self.root = Path(root)
        meta = json.loads((self.root / "meta.json").read_text())
        self.values = np.load(self.root / "values.npy", mmap_mode="r")
        labels = self.root / "labels.npy"
        self.labels = np.load(labels) if labels.exists() else None
        self.subjects = np.load(self.root / "subjects.npy")
        self.positions = np.load(self.root / "positions.npy")
        self.participants: tuple[str, ...] = tuple(meta["participants"])
        self.fs: float = float(meta["fs"])
        self.leads: tuple[str, ...] = tuple(meta["leads"])
        self.units: tuple[str, ...] = tuple(meta["units"])
        self.integer_labels: bool = bool(meta["integer_labels"])

    def __len__(self) -> int:
        return len(self.records)

    @property
    def channels(self) -> int:
        """C, the leads of every segment (an encoder's in_channels)."""
        return int(self.values.shape[1])


#: A record's cleaned signal from its source path and reading overrides (None: it lacks the
#: chosen leads); `BiosignalModality.clean` is one.
CleanRecord = Callable[[str, Sequence[tuple[str, float]]], Cleaned | None]


def windows_key(records: Sequence[Record], preprocessing: BiosignalPreprocessing) -> str:
    """sha256 of what the prepared segments depend on: the preprocessing, each segment's
    record, start, label, split, participant and reading settings, and size / mtime of every
    file of each record (a WFDB header's signal and annotation files too)."""
    files: set[str] = set()
    for source in {r.extra["source"] for r in records}:
        path = Path(source)
        stem = path.name.split(".")[0]
        files |= {str(f) for f in path.parent.glob(f"{stem}.*") if f.is_file()}
    payload = {
        "version": CACHE_VERSION,
        "preprocessing": preprocessing.model_dump(mode="json"),
        "records": [
            [r.image, r.split, r.label, r.subject_id, list(r.extra.get("reading", ()))]
            for r in records
        ],
    }
    return content_key(payload, sorted(files))


def prepare_windows(
    records: Sequence[Record],
    cache_dir: str | Path,
    preprocessing: BiosignalPreprocessing,
    clean: CleanRecord,
) -> PreparedWindows:
    """Cut and normalise the records' segments once, from the records `clean` returns;
    later calls with the same records, files and preprocessing reopen the cache."""
    if not records:
        raise ValueError("prepare_windows needs at least one record")
    p = preprocessing
    root = Path(cache_dir) / f"biosignal-{windows_key(records, p)[:16]}"
    if (root / "meta.json").exists():
        return PreparedWindows(records, root)
    length = p.window
    first = clean(records[0].extra["source"], records[0].extra.get("reading", ()))
    assert first is not None
    values = np.empty((len(records), first.values.shape[0], length), dtype=np.float32)
    leads, units = first.leads, first.units
    for k, record in enumerate(records):
        cleaned = clean(record.extra["source"], record.extra.get("reading", ()))
        assert cleaned is not None
        # Named leads may come under other names (II or MLII); all channels must match.
        served = [x.lower() for x in cleaned.leads]
        if len(served) != len(leads) or (p.leads is None and served != [x.lower() for x in leads]):
            raise DataError(
                f"{record.extra['source']} serves leads {list(cleaned.leads)} but "
                f"{records[0].extra['source']} serves {list(leads)}; set "
                "data.preprocessing.leads so every record serves the same leads"
            )
        start = record.extra["start"]
        segment = cleaned.values[:, start : start + length].astype(np.float64)
        values[k] = zscore(segment) if p.normalisation == "segment" else segment
    participants = sorted({r.subject_id for r in records})
    at = {name: k for k, name in enumerate(participants)}
    raw_labels = [np.nan if r.label is None else float(r.label) for r in records]
    labels = None if all(np.isnan(raw_labels)) else np.array(raw_labels, dtype=np.float64)
    whole = labels is not None and all(
        isinstance(r.label, (int, np.integer)) for r in records if r.label is not None
    )
    arrays: dict[str, Any] = {
        "values": values,
        "labels": labels,
        "subjects": np.array([at[r.subject_id] for r in records], dtype=np.int64),
        "positions": np.array([r.extra["position"] for r in records], dtype=np.float32),
    }
    meta = {
        "version": CACHE_VERSION,
        "participants": participants,
        "fs": p.fs,
        "leads": list(leads),
        "units": list(units),
        "integer_labels": bool(whole),
        "preprocessing": p.model_dump(mode="json"),
    }
    write_cache_folder(root, arrays, meta)
    return PreparedWindows(records, root)
