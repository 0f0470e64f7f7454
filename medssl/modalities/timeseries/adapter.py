"""The generic time-series adapter registered as "timeseries": UCR/UEA archives (.ts, .tsv,
.arff), CSV, npy/npz and forecasting tables, behind the `Modality` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator
from torch.utils.data import Dataset

from medssl.modalities.base import Modality, Problem, Purpose, Record
from medssl.modalities.timeseries.discovery import discover_files, parse_dataset
from medssl.modalities.timeseries.forecasting import SPLITS
from medssl.modalities.timeseries.prepared import PreparedSeries, forecast_windows, prepare_series
from medssl.modalities.timeseries.readers import CsvOptions
from medssl.modalities.timeseries.series import raise_problems
from medssl.modalities.timeseries.validate import validate_series
from medssl.platform.errors import DataError
from medssl.platform.registry import MODALITIES

PURPOSES = ("pretrain", "classification", "embed", "evaluate")  # no segmentation of series


class ForecastSettings(BaseModel):
    """`data.preprocessing.forecasting`: read the CSV as one long table to forecast.

    target: the column forecast in "univariate" mode ("multivariate" forecasts every column).
    date_column: the timestamps, from which the sampling rate and the calendar covariates
        come; None (or a missing column) splits by `split_fractions`.
    split_months: train / val / test months (30 days of rows each) when the rate is known.
    time_features: prepend TS2Vec's seven calendar covariates to the inputs.
    section_length: each split is served as floor(rows / section_length) (at least one)
        near-equal sections, as TS2Vec cuts its training series at max_train_length 3000.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = "OT"
    mode: Literal["univariate", "multivariate"] = "univariate"
    date_column: str | None = "date"
    split_months: tuple[int, int, int] = (12, 4, 4)
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    time_features: bool = True
    section_length: int | None = 3000

    @field_validator("split_months")
    @classmethod
    def _months(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 1:
            raise ValueError(f"split_months must be positive, got {value}")
        return value

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0 or sum(value) > 1 + 1e-9:
            raise ValueError(f"split_fractions must be positive and sum to at most 1, got {value}")
        return value

    @field_validator("section_length")
    @classmethod
    def _section(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"section_length must be a positive number of rows, got {value}")
        return value


class TimeSeriesPreprocessing(BaseModel):
    """`data.preprocessing` for series.

    normalisation: "dataset" (per-channel z-score with statistics of the TRAIN series only;
        of every series when no file is marked TRAIN, with a warning), "series" (each series
        on its own) or "none".
    csv_layout, label_column, id_column, time_column: how a classification CSV is laid out
        (see `parse_csv`).
    forecasting: read a CSV as a forecasting table instead (see `ForecastSettings`); its
        variables are always z-scored with training-row statistics.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    normalisation: Literal["dataset", "series", "none"] = "dataset"
    csv_layout: Literal["auto", "wide", "long"] = "auto"
    label_column: str | None = "label"
    id_column: str = "series_id"
    time_column: str = "time"
    forecasting: ForecastSettings | None = None


@MODALITIES.register("timeseries")
class TimeSeriesModality(Modality):
    """Univariate and multivariate series, equal or variable length, for classification
    (UCR/UEA protocol) and forecasting (ETT protocol).

    Items are `{x (C, T_max) float32 NaN-padded, label, subject, index}`; `subject` is the
    series' record index (each series is its own subject). The prepared series are cached as
    one .npy memory map per dataset and preprocessing.

    Example:
        >>> m = TimeSeriesModality({"normalisation": "series"})
        >>> m.contract()["normalisation"]
        'series'
    """

    name: ClassVar[str] = "timeseries"
    provides: ClassVar[frozenset[str]] = frozenset({"subject", "label", "index"})
    default_encoder: ClassVar[str] = "ts2vec"
    Preprocessing: ClassVar[type[BaseModel]] = TimeSeriesPreprocessing

    preprocessing: TimeSeriesPreprocessing

    def _csv_options(self) -> CsvOptions:
        p = self.preprocessing
        return CsvOptions(p.csv_layout, p.label_column, p.id_column, p.time_column)

    def scan(self, path: str | Path) -> list[Record]:
        if self.preprocessing.forecasting is not None:
            return self._scan_forecast(Path(path))
        files, problems = discover_files(path)
        raise_problems(path, problems)
        dataset = parse_dataset(files, self._csv_options())
        raise_problems(path, dataset.problems)
        records = []
        for f, parsed, labels in zip(files, dataset.parsed, dataset.labels, strict=True):
            for k, series in enumerate(parsed.series):
                label = None if labels is None else int(labels[k])
                records.append(
                    Record(
                        subject_id=f"{Path(f.path).stem}#{k}",
                        image=f"{f.path}#{k}",
                        label=label,
                        split=f.split,
                        extra={"source": f.path, "item": k, "channels": int(series.shape[0])},
                    )
                )
        if not records:
            raise DataError(f"{path} holds no series")
        return records

    def _scan_forecast(self, path: Path) -> list[Record]:
        settings = self.preprocessing.forecasting
        assert settings is not None
        if not path.is_file() or path.suffix.lower() != ".csv":
            raise DataError(f"{path}: forecasting reads one CSV table; give its file")
        windows = forecast_windows(str(path), settings)
        records = []
        for split in SPLITS:
            rows = windows.splits[split]
            n = rows.stop - rows.start
            parts = max(1, n // settings.section_length) if settings.section_length else 1
            edges = np.linspace(rows.start, rows.stop, parts + 1).round().astype(int)
            for k in range(parts):
                start, stop = int(edges[k]), int(edges[k + 1])
                records.append(
                    Record(
                        subject_id=f"{path.stem}#{split}{k}",
                        image=f"{path}#{split}:{start}:{stop}",
                        split=split,
                        extra={"source": str(path), "start": start, "stop": stop},
                    )
                )
        return records

    def validate(self, path: str | Path) -> list[Problem]:
        return validate_series(path, self.preprocessing)

    def prepare(self, records: Sequence[Record], cache_dir: str | Path) -> PreparedSeries:
        return prepare_series(records, cache_dir, self.preprocessing)

    def dataset(
        self, prepared: Any, indices: Sequence[int], purpose: Purpose, seed: int = 0
    ) -> Dataset:
        return SeriesDataset(prepared, indices, purpose)

    def contract(self) -> dict[str, Any]:
        contract = self.preprocessing.model_dump(mode="json")
        if self.preprocessing.forecasting is not None:
            contract["normalisation"] = "dataset"
        contract["padding"] = "nan"
        contract["layout"] = "(channels, steps)"
        return contract


class SeriesDataset(Dataset):
    """Items `{x, label, subject, index}` of a PreparedSeries; `label` only when every chosen
    series has one. Views and crops are made later, on the device, from whole series."""

    def __init__(self, prepared: PreparedSeries, indices: Sequence[int], purpose: str) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
        self.prepared = prepared
        self.indices = [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < len(prepared)]
        if bad:
            raise ValueError(
                f"indices {bad[:5]} are outside the prepared dataset of {len(prepared)}"
            )
        labels = prepared.labels
        self._with_label = labels is not None and all(labels[i] >= 0 for i in self.indices)
        if purpose == "classification" and not self._with_label:
            raise DataError(
                f"{prepared.records[0].extra.get('source')}: classification needs a class "
                "label for every series; these series have none"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        i = self.indices[position]
        item: dict[str, Any] = {
            "x": self.prepared.series(i),
            "subject": np.int64(i),
            "index": np.int64(i),
        }
        if self._with_label:
            item["label"] = np.int64(self.prepared.labels[i])  # type: ignore[index]
        return item
