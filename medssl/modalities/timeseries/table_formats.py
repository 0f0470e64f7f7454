"""Readers of tabular and array series: CSV in wide (one row a series) or long (one row a time
step of a series id) layout, and npy / npz arrays of shape (samples, channels, steps).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from medssl.modalities.timeseries.series import ParsedSeries, label_text, parse_numbers

CsvLayout = Literal["auto", "wide", "long"]
VALUE_KEYS = ("x", "X", "data", "values")
LABEL_KEYS = ("y", "Y", "labels", "label")


def _rows(path: Path, parsed: ParsedSeries) -> list[tuple[int, list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1)]
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        parsed.problem(f"cannot be read as CSV ({err})")
        return []
    return [(n, row) for n, row in rows if any(cell.strip() for cell in row)]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell.strip().lower() in ("", "nan", "?")
    return True


def parse_csv(
    path: str | Path,
    layout: CsvLayout = "auto",
    label_column: str | None = "label",
    id_column: str = "series_id",
    time_column: str = "time",
) -> ParsedSeries:
    """A CSV of series. Wide: a header row, then one series a row; the `label_column` (when
    present) is the class, an `id_column` is skipped, every other column is one time step
    (empty cells at the end pad shorter series). A file without a header row is read as
    values only. Long: one row per (series, time step) with `id_column`, an optional
    `time_column` to order the steps, the optional `label_column` (constant per series), and
    one column per channel. "auto" picks long when the header names both `id_column` and
    `time_column`."""
    path = Path(path)
    parsed = ParsedSeries(str(path))
    rows = _rows(path, parsed)
    if not rows:
        return parsed
    header = [c.strip() for c in rows[0][1]]
    if all(_is_number(c) for c in header):
        _wide(rows, [f"t{k}" for k in range(len(header))], None, None, parsed)
    elif layout == "long" or (layout == "auto" and {id_column, time_column} <= set(header)):
        _long(rows[1:], header, label_column, id_column, time_column, parsed)
    else:
        _wide(rows[1:], header, label_column, id_column, parsed)
    return parsed


def _wide(
    rows: Sequence[tuple[int, list[str]]],
    header: list[str],
    label_column: str | None,
    id_column: str | None,
    parsed: ParsedSeries,
) -> None:
    label_at = header.index(label_column) if label_column in header else None
    skip = {label_at, header.index(id_column) if id_column in header else None}
    keep = [k for k in range(len(header)) if k not in skip]
    keep = _drop_text_columns(rows, header, keep, parsed)
    parsed.raw_labels = [] if label_at is not None else None
    for n, row in rows:
        if len(row) != len(header):
            parsed.problem(
                f"line {n} has {len(row)} cells, the header has {len(header)}; leave missing "
                "steps as empty cells so every row has the same number of cells"
            )
            continue
        values = parse_numbers([row[k] for k in keep], f"line {n}", parsed)
        if values is None:
            continue
        parsed.series.append(values[None, :])
        parsed.locations.append(f"line {n}")
        if parsed.raw_labels is not None and label_at is not None:
            parsed.raw_labels.append(label_text(row[label_at]))


def _drop_text_columns(
    rows: Sequence[tuple[int, list[str]]], header: list[str], keep: list[int], parsed: ParsedSeries
) -> list[int]:
    """Columns whose first data cell is text (a date, a name) are one problem each, not one
    per row, and are left out of the values."""
    if not rows or len(rows[0][1]) != len(header):
        return keep
    n, first = rows[0]
    text = [k for k in keep if not _is_number(first[k])]
    for k in text:
        parsed.problem(
            f"column {header[k]!r} holds text (line {n}: {first[k].strip()!r}); name it as "
            "data.preprocessing.label_column or id_column, or set "
            "data.preprocessing.forecasting to read a forecasting table"
        )
    return [k for k in keep if k not in text]


def _long(
    rows: Sequence[tuple[int, list[str]]],
    header: list[str],
    label_column: str | None,
    id_column: str,
    time_column: str,
    parsed: ParsedSeries,
) -> None:
    if id_column not in header:
        parsed.problem(f"has no {id_column!r} column for the long layout; columns: {header}")
        return
    at = {
        name: header.index(name)
        for name in (id_column, time_column, label_column)
        if name in header
    }
    channels = [k for k in range(len(header)) if k not in at.values()]
    parsed.channel_names = tuple(header[k] for k in channels)
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    for n, row in rows:
        if len(row) != len(header):
            parsed.problem(f"line {n} has {len(row)} cells, the header has {len(header)}")
            continue
        groups.setdefault(row[at[id_column]].strip(), []).append((n, row))
    parsed.raw_labels = [] if label_column in at else None
    for series_id, members in groups.items():
        _long_series(series_id, members, at, channels, label_column, time_column, parsed)


def _long_series(
    series_id: str,
    members: list[tuple[int, list[str]]],
    at: dict[str | None, int],
    channels: list[int],
    label_column: str | None,
    time_column: str,
    parsed: ParsedSeries,
) -> None:
    where = f"series {series_id!r} (line {members[0][0]})"
    if time_column in at:
        stamps = [row[at[time_column]].strip() for _, row in members]
        numeric = all(_is_number(s) and s for s in stamps)
        keys = [float(s) for s in stamps] if numeric else stamps
        if len(set(keys)) != len(keys):
            parsed.problem(f"{where} repeats a {time_column!r} value; each step needs its own time")
            return
        members = [m for _, m in sorted(zip(keys, members, strict=True), key=lambda p: p[0])]
    steps = []
    for n, row in members:
        values = parse_numbers([row[k] for k in channels], f"line {n}", parsed)
        if values is None:
            return
        steps.append(values)
    if label_column in at:
        labels = {label_text(row[at[label_column]]) for _, row in members}
        if len(labels) != 1:
            parsed.problem(f"{where} has several labels {sorted(labels)}; a series has one class")
            return
        parsed.raw_labels.append(labels.pop())  # type: ignore[union-attr]
    parsed.series.append(np.stack(steps, axis=1))
    parsed.locations.append(where)


def parse_array(path: str | Path, labels_path: str | Path | None = None) -> ParsedSeries:
    """An npy of shape (samples, channels, steps) or (samples, steps), or an npz with the
    values under x / X / data / values and optional labels under y / Y / labels / label.
    NaN at the end of a series is padding; an npy's labels may sit in `labels_path`
    (by default `<stem>_labels.npy` beside it)."""
    path = Path(path)
    parsed = ParsedSeries(str(path))
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        parsed.problem(f"cannot be read as a numpy array file ({err})")
        return parsed
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            value_key = next(
                (k for k in VALUE_KEYS if k in keys), keys[0] if len(keys) == 1 else None
            )
            if value_key is None:
                parsed.problem(f"has no array named one of {list(VALUE_KEYS)}; it holds {keys}")
                return parsed
            values = loaded[value_key]
            label_key = next((k for k in LABEL_KEYS if k in keys), None)
            labels = loaded[label_key] if label_key else None
    else:
        values = loaded
        sibling = Path(labels_path) if labels_path else path.with_name(f"{path.stem}_labels.npy")
        labels = np.load(sibling, allow_pickle=False) if sibling.is_file() else None
    _array_series(values, labels, parsed)
    return parsed


def _array_series(values: np.ndarray, labels: np.ndarray | None, parsed: ParsedSeries) -> None:
    if values.dtype.kind not in "biuf":
        parsed.problem(f"holds {values.dtype} values; series must be numbers")
        return
    if values.ndim == 2:
        values = values[:, None, :]
    if values.ndim != 3:
        parsed.problem(f"has shape {values.shape}; expected (samples, channels, steps)")
        return
    values = values.astype(np.float64)
    for i in np.flatnonzero(np.isinf(values).any(axis=(1, 2))):
        parsed.problem(f"series index {i}: holds an infinite value")
    if labels is not None:
        labels = labels.reshape(-1)
        if labels.shape[0] != values.shape[0]:
            parsed.problem(f"has {labels.shape[0]} labels for {values.shape[0]} series")
            return
        parsed.raw_labels = [label_text(str(v)) for v in labels.tolist()]
    parsed.series = list(values)
    parsed.locations = [f"series index {i}" for i in range(values.shape[0])]
