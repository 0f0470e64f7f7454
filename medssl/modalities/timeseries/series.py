"""The in-memory form every time-series reader returns: NaN-padded (N, C, T) float32 values,
true lengths and integer labels with their class names, plus the problems found reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medssl.modalities.base import Problem
from medssl.platform.errors import DataError

MISSING_TOKENS = frozenset({"?", "nan", "NaN", "NAN", ""})


@dataclass
class SeriesSet:
    """A labelled collection of (possibly multivariate, possibly variable-length) series.

    values: float32 (N, C, T_max); a series shorter than T_max is padded with NaN at the end.
    lengths: int64 (N,), the number of steps before the padding (missing values inside a
        series stay NaN and still count).
    labels: int64 (N,) indices into `class_names`, or None for unlabelled data.
    class_names: the label strings in class-index order.
    source: the file the series were read from.
    channel_names: one name per channel (columns of a CSV, dimension numbers otherwise).
    """

    values: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...]
    source: str
    channel_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def channels(self) -> int:
        return int(self.values.shape[1])


@dataclass
class ParsedSeries:
    """What a reader found before labels are mapped: one (C, T_i) float64 array per series,
    the raw label strings, where each series sits in the file ("line 23", "series 4"; for
    problems), and the problems."""

    source: str
    series: list[np.ndarray] = field(default_factory=list)
    raw_labels: list[str] | None = None
    locations: list[str] = field(default_factory=list)
    declared_classes: tuple[str, ...] | None = None
    channel_names: tuple[str, ...] = ()
    problems: list[Problem] = field(default_factory=list)

    def problem(self, message: str) -> None:
        self.problems.append(Problem(self.source, message))


def label_text(cell: str) -> str:
    """Labels compare as text; '1' and '1.0' are the same class in numeric UCR files."""
    text = cell.strip().strip("'\"")
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def parse_numbers(cells: Sequence[str], where: str, parsed: ParsedSeries) -> np.ndarray | None:
    """float64 values of `cells` ('?', 'NaN' and empty cells are missing); None, with one
    problem per bad cell, when any cell is not a number."""
    cleaned = ["nan" if c.strip() in MISSING_TOKENS else c for c in cells]
    try:
        values = np.array(cleaned, dtype=np.float64)
    except ValueError:
        for k, cell in enumerate(cleaned):
            try:
                float(cell)
            except ValueError:
                parsed.problem(f"{where}: value {k + 1} {cell.strip()!r} is not a number")
        return None
    if np.isinf(values).any():
        parsed.problem(f"{where}: holds an infinite value")
        return None
    return values


def check_series(parsed: ParsedSeries) -> None:
    """Problems every format shares: no series at all, and series with no observed value."""
    if not parsed.series and not parsed.problems:
        parsed.problem("holds no series; the file is empty or has no data rows")
    for array, where in zip(parsed.series, parsed.locations, strict=True):
        if array.size == 0 or np.isnan(array).all():
            parsed.problem(f"{where}: series is entirely missing (no observed value)")


def class_order(raw: Sequence[str], declared: Sequence[str] | None = None) -> tuple[str, ...]:
    """Class names in index order: the header's declared order when there is one, else the
    distinct labels sorted numerically when they are all numbers, else alphabetically."""
    if declared:
        return tuple(declared)
    distinct = sorted(set(raw))
    try:
        return tuple(sorted(distinct, key=float))
    except ValueError:
        return tuple(distinct)


def map_labels(
    parsed: ParsedSeries, class_names: Sequence[str] | None, reference: str | None = None
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Integer labels of `parsed` against `class_names` (from the training file when given,
    else this file's own order); each unknown label is one problem naming its line."""
    if parsed.raw_labels is None:
        return None, tuple(class_names or ())
    names = (
        tuple(class_names)
        if class_names
        else class_order(parsed.raw_labels, parsed.declared_classes)
    )
    index = {name: i for i, name in enumerate(names)}
    labels = np.full(len(parsed.raw_labels), -1, dtype=np.int64)
    for k, (raw, where) in enumerate(zip(parsed.raw_labels, parsed.locations, strict=True)):
        if raw in index:
            labels[k] = index[raw]
        else:
            known = f"the classes of {reference}" if reference else "the declared classes"
            parsed.problem(f"{where}: class label {raw!r} is not among {known} {list(names)}")
    return labels, names


def pack(series: Sequence[np.ndarray], dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Stack (C, T_i) arrays into `dtype` (N, C, T_max) padded with NaN at the end, and the
    lengths (see `observed_length`: trailing all-missing steps count as padding, the UCR
    convention for variable-length series). Nothing is cut: T_max is the longest series."""
    if not series:
        return np.zeros((0, 0, 0), dtype=dtype), np.zeros(0, dtype=np.int64)
    channels = max(s.shape[0] for s in series)
    steps = max(s.shape[1] for s in series)
    out = np.full((len(series), channels, steps), np.nan, dtype=dtype)
    for i, s in enumerate(series):
        out[i, : s.shape[0], : s.shape[1]] = s
    return out, observed_length(out)


def observed_length(values: np.ndarray) -> np.ndarray:
    """Per series of (N, C, T): one past the last step where any channel is observed."""
    observed = ~np.isnan(values).all(axis=1)  # (N, T)
    last = values.shape[2] - np.argmax(observed[:, ::-1], axis=1)
    return np.where(observed.any(axis=1), last, 0).astype(np.int64)


def to_series_set(
    parsed: ParsedSeries, class_names: Sequence[str] | None = None, reference: str | None = None
) -> SeriesSet:
    """The SeriesSet of a clean parse; DataError listing every problem otherwise."""
    labels, names = map_labels(parsed, class_names, reference)
    raise_problems(parsed.source, parsed.problems)
    values, lengths = pack(parsed.series)
    channel_names = parsed.channel_names or tuple(str(c) for c in range(values.shape[1]))
    return SeriesSet(values, lengths, labels, names, parsed.source, channel_names)


def raise_problems(path: str | Path, problems: Sequence[Problem]) -> None:
    """DataError listing `problems` (the first in the message), when there are any."""
    if problems:
        raise DataError(
            f"{path}: {len(problems)} problem(s), first: {problems[0]}; "
            "run `validate` on the dataset for the full list and fix the file",
            [str(p) for p in problems],
        )
