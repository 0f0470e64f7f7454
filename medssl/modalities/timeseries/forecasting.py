"""Forecasting data: a long multivariate table (ETT: a date column, then variables) cut by time
into train / validation / test, normalised with training rows only, and causal target windows.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from medssl.modalities.base import Problem
from medssl.modalities.timeseries.normalise import ChannelStats, fit_channel_stats
from medssl.modalities.timeseries.series import raise_problems

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DAYS_PER_MONTH = 30  # the ETT convention: a "month" is 30 days of rows
TIME_FEATURES = ("minute", "hour", "dayofweek", "day", "dayofyear", "month", "weekofyear")


@dataclass
class ForecastTable:
    """A table read from CSV: parsed dates (or None), variable names, float64 values (T, V)."""

    source: str
    dates: np.ndarray | None
    names: tuple[str, ...]
    values: np.ndarray


def read_forecast_table(
    path: str | Path, date_column: str | None = "date"
) -> tuple[ForecastTable | None, list[Problem]]:
    """The table and every problem in it: non-numeric or empty cells (with line and column),
    unparseable or non-increasing dates, a file with no data row."""
    source = str(path)
    problems: list[Problem] = []
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if any(c.strip() for c in row)]
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        return None, [Problem(source, f"cannot be read as CSV ({err})")]
    if len(rows) < 2:
        return None, [Problem(source, "holds no data rows under its header")]
    header = [c.strip() for c in rows[0]]
    body = rows[1:]
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            problems.append(Problem(source, f"line {n} has {len(row)} cells, header {len(header)}"))
    if problems:
        return None, problems
    date_at = header.index(date_column) if date_column in header else None
    value_at = [k for k in range(len(header)) if k != date_at]
    values = np.full((len(body), len(value_at)), np.nan)
    unreadable = np.zeros(values.shape, dtype=bool)
    for j, k in enumerate(value_at):
        column = [row[k].strip() for row in body]
        try:
            values[:, j] = np.array(column, dtype=np.float64)
        except ValueError:
            values[:, j], unreadable[:, j] = _column_by_cell(column)
            problems += _cell_problems(source, column, unreadable[:, j], header[k], "not a number")
        missing = ~np.isfinite(values[:, j]) & ~unreadable[:, j]
        problems += _cell_problems(source, column, missing, header[k], "missing or infinite")
    dates = (
        _dates(source, [row[date_at] for row in body], problems) if date_at is not None else None
    )
    table = ForecastTable(source, dates, tuple(header[k] for k in value_at), values)
    return (None if problems else table), problems


def _column_by_cell(column: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Values of a column with non-numbers as NaN, and where those non-numbers are."""
    values = np.full(len(column), np.nan)
    unreadable = np.zeros(len(column), dtype=bool)
    for i, cell in enumerate(column):
        try:
            values[i] = float(cell)
        except ValueError:
            unreadable[i] = True
    return values, unreadable


def _cell_problems(
    source: str, column: list[str], where: np.ndarray, name: str, what: str, shown: int = 5
) -> list[Problem]:
    """One problem per flagged cell, the first `shown` of a column, then one line with the
    count (a text or empty column would otherwise list every row)."""
    bad = np.flatnonzero(where)
    out = [
        Problem(source, f"line {i + 2} column {name!r}: {column[i]!r} is {what}")
        for i in bad[:shown]
    ]
    if len(bad) > shown:
        out.append(
            Problem(
                source,
                f"column {name!r}: {len(bad) - shown} more cells after line "
                f"{bad[shown - 1] + 2} are {what}",
            )
        )
    return out


def _dates(source: str, cells: list[str], problems: list[Problem]) -> np.ndarray | None:
    try:
        dates = np.array([c.strip() for c in cells], dtype="datetime64[s]")
    except ValueError:
        for i, cell in enumerate(cells):
            try:
                np.datetime64(cell.strip(), "s")
            except ValueError:
                problems.append(Problem(source, f"line {i + 2}: date {cell!r} is not ISO 8601"))
        return None
    steps = np.diff(dates).astype(np.int64)
    for i in np.flatnonzero(steps <= 0)[:20]:
        problems.append(Problem(source, f"line {i + 3}: date {cells[i + 1]!r} does not increase"))
    return dates


def steps_per_day(dates: np.ndarray | None) -> int | None:
    """Rows per day from the median sampling period (24 for hourly, 96 for 15-minute data),
    or None when there are no dates or the period does not divide a day."""
    if dates is None or len(dates) < 2:
        return None
    period = int(np.median(np.diff(dates).astype("timedelta64[s]").astype(np.int64)))
    return 86400 // period if period > 0 and 86400 % period == 0 else None


def split_bounds(
    n_rows: int,
    per_day: int | None,
    months: tuple[int, int, int] = (12, 4, 4),
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> tuple[dict[str, slice], str]:
    """Contiguous train / val / test row ranges, in time order.

    With a known sampling rate and enough rows, split k spans months[k] * 30 * per_day rows
    (ETTh: 8640 / 2880 / 2880 rows for 12 / 4 / 4 months of hourly data; ETTm: 4 times that),
    and rows after the test split are not used, as in TS2Vec. Otherwise the rows are cut by
    `fractions` of the table (TS2Vec's rule for other tables). Returns the slices and the rule
    used ("months" or "fractions")."""
    if per_day is not None and sum(months) * DAYS_PER_MONTH * per_day <= n_rows:
        edges = np.cumsum([0, *months]) * DAYS_PER_MONTH * per_day
        rule = "months"
    else:
        edges = np.array([0, *np.cumsum(fractions)]) * n_rows
        edges = np.floor(edges + 1e-9).astype(int)
        rule = "fractions"
    bounds = {name: slice(int(edges[k]), int(edges[k + 1])) for k, name in enumerate(SPLITS)}
    return bounds, rule


def calendar_features(dates: np.ndarray) -> np.ndarray:
    """TS2Vec's calendar covariates (T, 7): minute, hour, day of week (Monday 0), day of
    month, day of year, month, ISO week of year."""
    days = dates.astype("datetime64[D]")
    month_start = dates.astype("datetime64[M]")
    seconds = (dates - days).astype(np.int64)
    day_index = days.astype(np.int64)
    unique, inverse = np.unique(days, return_inverse=True)
    iso_week = np.array([d.item().isocalendar()[1] for d in unique])[inverse]
    return np.stack(
        [
            (seconds // 60) % 60,
            seconds // 3600,
            (day_index + 3) % 7,  # 1970-01-01 was a Thursday
            (days - month_start.astype("datetime64[D]")).astype(np.int64) + 1,
            (days - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1,
            month_start.astype(np.int64) % 12 + 1,
            iso_week,
        ],
        axis=1,
    ).astype(np.float64)


class ForecastWindows:
    """A forecasting table split by time, normalised on its training rows (TS2Vec / AutoTCL
    protocol, Yue et al. 2022 section 4.2).

    inputs: float32 (T, covariates + variables): the calendar covariates (when
        `time_features`) then the variables, each z-scored with training-row statistics.
    targets: float32 (T, variables): the variables alone (univariate: the `target` column;
        multivariate: every numeric column), normalised the same way.
    splits: {"train", "val", "test"} -> row slice (see `split_bounds`); T ends at the test end.
    stats: mean / std of the variables on the training rows (to undo the normalisation).

    Example:
        >>> w = ForecastWindows("ETTh2.csv", target="OT", mode="univariate")  # doctest: +SKIP
        >>> w.splits["val"], w.inputs.shape
        (slice(8640, 11520, None), (14400, 8))
    """

    def __init__(
        self,
        path: str | Path,
        *,
        target: str = "OT",
        mode: Literal["univariate", "multivariate"] = "univariate",
        date_column: str | None = "date",
        split_months: tuple[int, int, int] = (12, 4, 4),
        split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
        time_features: bool = True,
    ) -> None:
        if mode not in ("univariate", "multivariate"):
            raise ValueError(f"mode must be 'univariate' or 'multivariate', got {mode!r}")
        table, problems = read_forecast_table(path, date_column)
        if table is not None and mode == "univariate" and target not in table.names:
            problems.append(
                Problem(str(path), f"has no target column {target!r}; columns: {list(table.names)}")
            )
        raise_problems(path, problems)
        assert table is not None
        self.source, self.mode, self.target = str(path), mode, target
        self.steps_per_day = steps_per_day(table.dates)
        self.splits, self.split_rule = split_bounds(
            len(table.values), self.steps_per_day, split_months, split_fractions
        )
        used = slice(0, self.splits["test"].stop)
        if used.stop < len(table.values):
            log.info("%s: rows after %d are past the test split and not used", path, used.stop)
        keep = (
            [table.names.index(target)] if mode == "univariate" else list(range(len(table.names)))
        )
        self.variables = tuple(table.names[k] for k in keep)
        variables = table.values[used, keep]
        self.stats = _fit_rows(variables, self.splits["train"])
        parts = [(variables - self.stats.mean) / self.stats.std]
        self.covariates: tuple[str, ...] = ()
        if time_features and table.dates is not None:
            calendar = calendar_features(table.dates[used])
            cal_stats = _fit_rows(calendar, self.splits["train"])
            parts.insert(0, (calendar - cal_stats.mean) / cal_stats.std)
            self.covariates = TIME_FEATURES
        self.inputs = np.concatenate(parts, axis=1).astype(np.float32)
        self.targets = self.inputs[:, len(self.covariates) :]

    def segment(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) rows of one split."""
        rows = self.splits[split]
        return self.inputs[rows], self.targets[rows]

    def pairs(self, split: str, horizon: int, drop: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Absolute row indices (representation row t, target rows t+1..t+H) inside `split`;
        no target row reaches past the split's last row (see `forecast_pairs`)."""
        # Imported here: the protocols module pulls in scikit-learn, which reading does not need.
        from medssl.platform.evaluation.timeseries_protocols import forecast_pairs

        rows = self.splits[split]
        t, window = forecast_pairs(rows.stop - rows.start, horizon, drop)
        return t + rows.start, window + rows.start

    def encoder_input(self) -> np.ndarray:
        """All inputs as one (1, C, T) float32 series, the layout encoders and
        `causal_sliding_representations` take; slice its (1, T, D) output by `splits`."""
        return np.ascontiguousarray(self.inputs.T[None])

    def denormalise(self, values: np.ndarray) -> np.ndarray:
        """Targets (..., variables) back in the table's units."""
        return values * self.stats.std + self.stats.mean


def _fit_rows(values: np.ndarray, rows: slice) -> ChannelStats:
    """Per-column statistics of the given rows of a (T, V) table."""
    return fit_channel_stats(values[rows].T[None])
