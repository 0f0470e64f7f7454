"""The dataset check of ECG/PPG records run before anything is prepared: at most one problem
per record (the cause that explains it), quality issues as warnings; nothing is written.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

from medssl.modalities.base import SPLIT_NAMES, Problem, Record, manifest_rows
from medssl.modalities.biosignal.quality import QualityIssue, quality_issues
from medssl.modalities.biosignal.readers import (
    ReadOptions,
    find_records,
    is_manifest_csv,
    read_signal,
)
from medssl.modalities.biosignal.wfdb_records import header_problem
from medssl.platform.errors import DataError

MANIFEST_COLUMNS = ("subject_id", "record")
#: Optional manifest columns read as numbers into `Record.extra["reading"]`.
READING_COLUMNS = ("fs", "gain", "baseline")


def validate_biosignal(
    path: str | Path, options: ReadOptions = ReadOptions()
) -> tuple[list[Problem], list[str]]:
    """(problems, warnings) of the records at `path`: a folder (every record of
    `find_records`), one record file, or a manifest CSV/JSON with columns subject_id, record
    and optional split / label (record paths relative to the manifest).

    Problems fail validation: a missing or unreadable file, a WFDB header whose signal lines
    disagree with its count, that names a missing signal file, or whose signal file is shorter
    than its samples need, an unreadable CSV/npz. A WFDB record whose header fails is not read
    further. Warnings are the quality issues (NaN, flat, clipped runs) of readable records.

    Example:
        >>> problems, warnings = validate_biosignal("data/physio/wfdb")  # doctest: +SKIP
        >>> print("\\n".join(map(str, problems)))  # doctest: +SKIP
    """
    p = Path(path)
    if not p.exists():
        hint = "give a folder, a record file or a manifest CSV/JSON"
        return [Problem(str(p), f"does not exist; {hint}")], []
    problems: list[Problem] = []
    records: list[tuple[str, ReadOptions]] = []
    if p.is_dir():
        records = [(r, options) for r in find_records(p)]
        if not records:
            problems.append(Problem(str(p), "holds no .hea, .csv, .npz or .npy record"))
    elif is_manifest(p):
        listed, problems = read_manifest(p)
        records = [
            (r.image, replace(options, **dict(r.extra.get("reading", ()))))
            for r in listed
            if Path(r.image).is_file()
        ]
    else:
        records = [(str(p), options)]
    warnings: list[str] = []
    for record, settings in records:
        problem, issues = check_record(record, settings)
        problems += [problem] if problem is not None else []
        warnings += issues
    return problems, warnings


def check_record(
    record: str, options: ReadOptions = ReadOptions()
) -> tuple[Problem | None, list[str]]:
    """The one problem of a record (or None) and its quality warnings."""
    path = Path(record)
    record = str(path)
    hea = path if path.suffix.lower() == ".hea" else None
    if hea is not None:
        problem = header_problem(hea)
        if problem is not None:
            return Problem(record, problem), []
    try:
        signal = read_signal(record, options)
    except DataError as err:
        return Problem(record, _without_path(str(err), record)), []
    return None, [f"{record}: {line}" for line in summarise(quality_issues(signal))]


def summarise(issues: list[QualityIssue], most: int = 3) -> list[str]:
    """One line per issue, or one summary line for a lead with more than `most` issues of one
    kind (a record with hundreds of dropouts should not flood the report)."""
    groups: dict[tuple[str, str], list[QualityIssue]] = {}
    for issue in issues:
        groups.setdefault((issue.lead, issue.kind), []).append(issue)
    lines = []
    for (lead, kind), group in groups.items():
        if len(group) <= most:
            lines += [str(issue) for issue in group]
            continue
        total = sum(issue.stop - issue.start for issue in group)
        lines.append(
            f"lead {lead}: {kind} in {len(group)} runs ({total:.3g} s in all) "
            f"from {group[0].start:.3f} s to {group[-1].stop:.3f} s"
        )
    return lines


def is_manifest(path: Path) -> bool:
    """A .json file, or a .csv whose header names subject_id and record."""
    return path.suffix.lower() == ".json" or is_manifest_csv(path)


def read_manifest(path: str | Path) -> tuple[list[Record], list[Problem]]:
    """The records a manifest lists (Record.image = the record path resolved against the
    manifest's folder; `extra["reading"]` the per-record `fs`, `gain`, `baseline` columns for
    files that lack them) and its problems: missing columns, empty subject ids, listed
    records that do not exist, records listed twice, unknown splits, non-numeric settings."""
    p = Path(path)
    try:
        rows = _manifest_rows(p)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
        return [], [Problem(str(p), f"is not a readable manifest ({err}); fix its format")]
    if not rows:
        return [], [Problem(str(p), "lists no record; add rows with subject_id and record")]
    missing = [c for c in MANIFEST_COLUMNS if c not in rows[0]]
    if missing:
        return [], [Problem(str(p), f"has no column {', '.join(missing)}; add it")]
    records: list[Record] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        subject, name = _text(row.get("subject_id")), _text(row.get("record"))
        if not subject or not name:
            problems.append(Problem(str(p), f"row {line} has an empty subject_id or record"))
            continue
        target = name if Path(name).is_absolute() else str(p.parent / name)
        if target in seen:
            problems.append(
                Problem(target, f"is listed twice in {p} (rows {seen[target]} and {line})")
            )
            continue
        seen[target] = line
        if not Path(target).exists():
            problems.append(Problem(target, f"is listed in {p} row {line} but does not exist"))
        split = _text(row.get("split")).lower() or None
        if split is not None and split not in SPLIT_NAMES:
            problems.append(Problem(str(p), f"row {line}: split '{split}' is not train/val/test"))
        split = SPLIT_NAMES.get(split or "")
        label, text = _label(row.get("label")), _text(row.get("label"))
        extra: dict[str, Any] = {"label": text} if text and label is None else {}
        reading = []
        for column in READING_COLUMNS:
            value = _text(row.get(column))
            if value and _label(value) is None:
                problems.append(Problem(str(p), f"row {line}: {column} '{value}' is not a number"))
            elif value:
                reading.append((column, float(value)))
        extra["reading"] = tuple(reading)
        records.append(Record(subject, target, label=label, split=split, extra=extra))
    return records, problems


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    return [{str(k).strip().lower(): v for k, v in row.items()} for row in manifest_rows(path)]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _label(value: Any) -> float | int | None:
    """A numeric label; text labels ("AF") travel in Record.extra["label"] instead."""
    text = _text(value)
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else number


def _without_path(message: str, path: str) -> str:
    """Messages start with the path, which Problem already prints."""
    return message[len(path) :].lstrip(" :") if message.startswith(path) else message
