"""One entry point over every series format: the suffix picks the parser, shared checks run
on the result, and `read_series` returns a SeriesSet or raises DataError listing every problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medssl.modalities.timeseries.series import ParsedSeries, SeriesSet, check_series, to_series_set
from medssl.modalities.timeseries.table_formats import CsvLayout, parse_array, parse_csv
from medssl.modalities.timeseries.text_formats import parse_arff, parse_ts, parse_tsv

SERIES_SUFFIXES = (".tsv", ".ts", ".arff", ".csv", ".npy", ".npz")


@dataclass(frozen=True)
class CsvOptions:
    """How a classification CSV is laid out (see `parse_csv`)."""

    layout: CsvLayout = "auto"
    label_column: str | None = "label"
    id_column: str = "series_id"
    time_column: str = "time"


def parse_file(path: str | Path, csv_options: CsvOptions | None = None) -> ParsedSeries:
    """Parse a series file of any supported format and run the shared checks; never raises
    for bad content (problems are collected on the result)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        parsed = ParsedSeries(str(p))
        parsed.problem("does not exist; give a series file, a TRAIN/TEST folder or a prefix")
        return parsed
    if suffix == ".tsv":
        parsed = parse_tsv(p)
    elif suffix == ".ts":
        parsed = parse_ts(p)
    elif suffix == ".arff":
        parsed = parse_arff(p)
    elif suffix == ".csv":
        o = csv_options or CsvOptions()
        parsed = parse_csv(p, o.layout, o.label_column, o.id_column, o.time_column)
    elif suffix in (".npy", ".npz"):
        parsed = parse_array(p)
    else:
        parsed = ParsedSeries(str(p))
        parsed.problem(f"has suffix {suffix!r}; series files are {', '.join(SERIES_SUFFIXES)}")
        return parsed
    check_series(parsed)
    return parsed


def read_series(
    path: str | Path,
    class_names: Sequence[str] | None = None,
    csv_options: CsvOptions | None = None,
    reference: str | None = None,
) -> SeriesSet:
    """Read a series file into float32 (N, C, T_max) NaN-padded values, lengths and labels.

    class_names: map labels with this order (the training file's classes, for a test file);
        a label outside it is a problem. By default the file's own order (see `class_order`).
    reference: the file `class_names` came from, named in problems.
    Raises DataError listing every problem; nothing is returned half-read.

    Example:
        >>> s = read_series("GunPoint_TRAIN.ts")  # doctest: +SKIP
        >>> s.values.shape, s.class_names
        ((50, 1, 150), ('1', '2'))
    """
    return to_series_set(parse_file(path, csv_options), class_names, reference)
