"""Readers of the archive text formats: UCR `.tsv` (label first), sktime/UEA `.ts` (header +
':'-separated dimensions) and Weka `.arff` (numeric attributes, or one relational attribute).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medssl.modalities.timeseries.series import (
    MISSING_TOKENS,
    ParsedSeries,
    label_text,
    parse_numbers,
)


def _lines(path: Path, parsed: ParsedSeries) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as err:
        parsed.problem(f"cannot be read ({err.strerror or err})")
        return []


def parse_tsv(path: str | Path) -> ParsedSeries:
    """UCR 2018 `.tsv`: one series a row, the class label in column 0, values after it;
    variable-length series are padded with NaN, so every row has the same number of columns."""
    path = Path(path)
    parsed = ParsedSeries(str(path), raw_labels=[])
    rows = [(n, line) for n, line in enumerate(_lines(path, parsed), start=1) if line.strip()]
    separator = "\t" if not rows or "\t" in rows[0][1] else ","
    width = None
    for n, line in rows:
        cells = line.rstrip("\r\n").split(separator)
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            parsed.problem(
                f"line {n} has {len(cells)} columns, line {rows[0][0]} has {width}; "
                "every row of a .tsv holds the label and the same number of values "
                "(pad shorter series with NaN)"
            )
            continue
        if len(cells) < 2:
            parsed.problem(f"line {n} has a label but no values")
            continue
        values = parse_numbers(cells[1:], f"line {n}", parsed)
        if values is not None:
            parsed.series.append(values[None, :])
            parsed.raw_labels.append(label_text(cells[0]))  # type: ignore[union-attr]
            parsed.locations.append(f"line {n}")
    return parsed


@dataclass
class TsHeader:
    """The `@` tags of a `.ts` file that constrain its data."""

    timestamps: bool = False
    missing: bool | None = None
    univariate: bool | None = None
    dimensions: int | None = None
    equal_length: bool | None = None
    series_length: int | None = None
    class_label: bool = False
    classes: tuple[str, ...] = ()
    target_label: bool = False


def _ts_header(lines: list[str], parsed: ParsedSeries) -> tuple[TsHeader, int | None]:
    header = TsHeader()
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            parsed.problem(f"line {n}: data before the @data tag")
            return header, None
        tag, _, rest = line[1:].partition(" ")
        tag, rest = tag.lower(), rest.strip()
        words = rest.split()
        flag = bool(words) and words[0].lower() == "true"
        try:
            if tag == "data":
                return header, n
            if tag == "timestamps":
                header.timestamps = flag
            elif tag == "missing":
                header.missing = flag
            elif tag == "univariate":
                header.univariate = flag
            elif tag == "dimensions":
                header.dimensions = int(words[0])
            elif tag == "equallength":
                header.equal_length = flag
            elif tag == "serieslength":
                header.series_length = int(words[0])
            elif tag == "classlabel":
                header.class_label, header.classes = flag, tuple(label_text(w) for w in words[1:])
            elif tag == "targetlabel":
                header.target_label = flag
        except (IndexError, ValueError):
            parsed.problem(f"line {n}: @{tag} needs an integer, got {rest!r}")
    parsed.problem("has no @data tag; a .ts file lists its header tags, then @data, then rows")
    return header, None


def parse_ts(path: str | Path) -> ParsedSeries:
    """sktime / UEA `.ts`: header tags, then one series a row, dimensions separated by ':',
    values by ','; '?' or NaN are missing; the class label is the last field when
    @classLabel is true. Rows that break the header's @dimensions, @univariate,
    @seriesLength / @equalLength or @missing claims are problems."""
    path = Path(path)
    parsed = ParsedSeries(str(path))
    lines = _lines(path, parsed)
    header, data_line = _ts_header(lines, parsed)
    if data_line is None:
        return parsed
    if header.timestamps:
        parsed.problem("uses @timeStamps true, which is not supported; export it without them")
        return parsed
    if header.target_label:
        parsed.problem("has regression targets (@targetLabel true); only class labels are read")
        return parsed
    parsed.declared_classes = header.classes or None
    parsed.raw_labels = [] if header.class_label else None
    expected = header.dimensions or (1 if header.univariate else None)
    for n in range(data_line + 1, len(lines) + 1):
        line = lines[n - 1].strip()
        if line and not line.startswith("#"):
            expected = _ts_row(line, n, header, expected, parsed)
    return parsed


def _ts_row(
    line: str, n: int, header: TsHeader, expected: int | None, parsed: ParsedSeries
) -> int | None:
    """Parse one data row into `parsed`; returns the dimension count later rows must match."""
    fields = line.split(":")
    label = None
    if header.class_label:
        if len(fields) < 2:
            parsed.problem(f"line {n} has no class label after its values (@classLabel true)")
            return expected
        label = label_text(fields.pop())
    if expected is not None and len(fields) != expected:
        claim = (
            f"the header says @dimensions {header.dimensions}"
            if header.dimensions
            else "the header says @univariate true"
            if header.univariate
            else "the first row has " + str(expected)
        )
        parsed.problem(f"line {n} has {len(fields)} dimension(s); {claim}")
        return expected
    dims = []
    for d, text in enumerate(fields, start=1):
        cells = text.split(",")
        where = f"line {n} dimension {d}"
        if header.missing is False and any(c.strip() in MISSING_TOKENS for c in cells):
            parsed.problem(
                f"{where} holds a missing value ('?', NaN or empty) but @missing is false"
            )
        values = parse_numbers(cells, where, parsed)
        if values is None:
            return len(fields)
        dims.append(values)
    lengths = {len(v) for v in dims}
    want = header.series_length if header.equal_length is not False else None
    if header.equal_length and want is None and parsed.series:
        want = parsed.series[0].shape[1]
    if want is not None and lengths != {want}:
        tag = f"@seriesLength {want}" if header.series_length else f"@equalLength true ({want})"
        parsed.problem(
            f"line {n} has {sorted(lengths)} values per dimension; the header says {tag}"
        )
        return len(fields)
    steps = max(lengths)
    series = np.full((len(dims), steps), np.nan)
    for d, values in enumerate(dims):
        series[d, : len(values)] = values
    parsed.series.append(series)
    parsed.locations.append(f"line {n}")
    if label is not None:
        parsed.raw_labels.append(label)  # type: ignore[union-attr]
    return len(fields)


_ATTRIBUTE = re.compile(r"@attribute\s+('(?:[^'\\]|\\.)*'|\"[^\"]*\"|\S+)\s*(.*)", re.IGNORECASE)


def parse_arff(path: str | Path) -> ParsedSeries:
    """Weka `.arff` as the time-series archives write it: either numeric attributes (one
    univariate series a row) or one relational attribute whose quoted value holds the
    dimensions separated by a literal '\\n' (multivariate); the last attribute, when nominal
    or string, is the class label."""
    path = Path(path)
    parsed = ParsedSeries(str(path))
    lines = _lines(path, parsed)
    kinds, classes, data_line = _arff_header(lines, parsed)
    if data_line is None:
        return parsed
    labelled = bool(kinds) and kinds[-1] in ("nominal", "string")
    parsed.raw_labels = [] if labelled else None
    parsed.declared_classes = classes or None
    relational = "relational" in kinds
    for n in range(data_line + 1, len(lines) + 1):
        line = lines[n - 1].strip()
        if not line or line.startswith("%"):
            continue
        if line.startswith("{"):
            parsed.problem(f"line {n}: sparse ARFF rows are not supported; write dense rows")
            return parsed
        cells, label = _arff_row(line, labelled, relational)
        series = _arff_series(cells, f"line {n}", len(kinds) - int(labelled), relational, parsed)
        if series is not None:
            parsed.series.append(series)
            parsed.locations.append(f"line {n}")
            if parsed.raw_labels is not None:
                parsed.raw_labels.append(label_text(label))
    return parsed


def _arff_series(
    cells: list[str], where: str, n_values: int, relational: bool, parsed: ParsedSeries
) -> np.ndarray | None:
    dims = []
    for d, text in enumerate(cells, start=1):
        values = parse_numbers(text.split(","), f"{where} dimension {d}", parsed)
        if values is None:
            return None
        dims.append(values)
    if not relational and len(dims[0]) != n_values:
        parsed.problem(f"{where} has {len(dims[0])} values; the header declares {n_values}")
        return None
    if len({len(v) for v in dims}) > 1:
        parsed.problem(f"{where}: dimensions have different lengths {[len(v) for v in dims]}")
        return None
    return np.stack(dims)


def _arff_header(
    lines: list[str], parsed: ParsedSeries
) -> tuple[list[str], tuple[str, ...], int | None]:
    """Top-level attribute kinds ("numeric", "nominal", "string", "relational"), the nominal
    classes of the last attribute, and the line of @data."""
    kinds: list[str] = []
    classes: tuple[str, ...] = ()
    nested = False
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        low = line.lower()
        if not line or line.startswith("%") or low.startswith("@relation"):
            continue
        if low.startswith("@end"):
            nested = False
        elif low.startswith("@data"):
            if not kinds:
                parsed.problem(f"line {n}: @data comes before any @attribute")
                return kinds, classes, None
            return kinds, classes, n
        elif low.startswith("@attribute"):
            match = _ATTRIBUTE.match(line)
            kind = match.group(2).strip() if match else ""
            if nested:
                continue
            if kind.startswith("{"):
                kinds.append("nominal")
                classes = tuple(label_text(c) for c in kind.strip("{} ").split(","))
            elif kind.lower() in ("numeric", "real", "integer", "relational", "string"):
                kinds.append("numeric" if kind.lower() in ("real", "integer") else kind.lower())
                nested = kind.lower() == "relational"
            else:
                parsed.problem(f"line {n}: attribute type {kind!r} is not supported")
        else:
            parsed.problem(f"line {n}: {line[:40]!r} is not an ARFF header line")
    parsed.problem("has no @data section")
    return kinds, classes, None


def _arff_row(line: str, labelled: bool, relational: bool) -> tuple[list[str], str]:
    """(one comma-separated value string per dimension, the label text)."""
    label = ""
    if labelled:
        line, _, label = line.rpartition(",")
    if relational:
        body = line.strip().strip("'\"")
        return [d for d in body.split("\\n")], label
    return [line], label
