"""Reports kept in a table: a CSV (or TSV) with one report per row, its id and its
findings / impression in named columns."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from medssl.modalities.base import Problem
from medssl.modalities.text.reports import (
    SECTIONS,
    Report,
    ReportCorpus,
    add_report,
    clean_report_text,
)
from medssl.platform.errors import DataError


def read_report_table(
    path: str | Path,
    id_column: str = "report_id",
    text_columns: Mapping[str, str] | None = None,
) -> ReportCorpus:
    """Read a CSV (or `.tsv`) table with one report per row.

    Args:
        path: the table, with a header line, UTF-8.
        id_column: the column holding each report's id.
        text_columns: section -> column, sections being "findings" and "impression";
            default {"findings": "findings", "impression": "impression"}. A section left
            out is empty. Cells are cleaned with `clean_report_text`.

    Returns:
        ReportCorpus: non-empty reports in row order (`source` `<path>#row<n>`, n counting
        data rows from 1), ids of empty ones, and a Problem per row with no id or a
        repeated id.

    Raises:
        ValueError: `text_columns` names a section other than findings / impression.
        DataError: the file cannot be read, or a named column is not in its header (the
            message lists the columns present).
    """
    path = Path(path)
    columns = dict(text_columns or {name: name for name in SECTIONS})
    unknown = sorted(set(columns) - set(SECTIONS))
    if unknown:
        raise ValueError(f"text_columns keys must be 'findings' / 'impression', not {unknown}")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            header = list(reader.fieldnames or [])
            missing = [c for c in [id_column, *columns.values()] if c not in header]
            if missing:
                raise DataError(
                    f"{path} has no column(s) {missing}; its columns are {header}: pass "
                    "id_column / text_columns naming columns it has"
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path} cannot be read as a UTF-8 table ({err}); check the file") from err
    corpus, seen = ReportCorpus(), dict[str, str]()
    for number, row in enumerate(rows, 1):
        source = f"{path}#row{number}"
        report_id = (row.get(id_column) or "").strip()
        if not report_id:
            corpus.problems.append(Problem(source, f"has no value in column {id_column!r}"))
            continue
        sections = {s: clean_report_text(row.get(c) or "") for s, c in columns.items()}
        findings, impression = (sections.get(name, "") for name in SECTIONS)
        add_report(corpus, Report(report_id, findings, impression, source), seen)
    return corpus
