"""Where a biosignal dataset's records are and whose they are: a manifest mapping records to
participants, a folder (every record its own participant) or one file; and lead selection."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medssl.modalities.biosignal.readers import find_records
from medssl.modalities.biosignal.validate import is_manifest, read_manifest
from medssl.platform.errors import DataError

log = logging.getLogger("medssl")


@dataclass(frozen=True)
class Source:
    """One record and who it belongs to."""

    path: str
    participant: str
    label: float | int | None = None
    split: str | None = None
    #: Per-record reading settings from manifest columns `fs`, `gain`, `baseline` (files
    #: that do not carry them: CSV without a time column, npz).
    reading: tuple[tuple[str, float], ...] = ()


def read_sources(path: str | Path) -> list[Source]:
    """The records of a dataset with their participants: a manifest (CSV / JSON with
    `subject_id` and `record`, optional `label`, `split` and the reading settings
    `fs`, `gain`, `baseline` for files that lack them; paths relative to the manifest),
    a folder (every record its own participant) or one record file."""
    root = Path(path)
    if root.is_file() and is_manifest(root):
        return _manifest_sources(root)
    if root.is_dir():
        found = find_records(root)
        if not found:
            raise DataError(f"{root} holds no WFDB, CSV or npz record")
        log.info("%s: no manifest, so every record is its own participant", root)
        return [Source(p, _participant(p, root)) for p in found]
    if root.is_file():
        return [Source(str(root), _participant(str(root), root.parent))]
    raise DataError(f"{root} does not exist; give a folder, a manifest or a record file")


def _participant(path: str, root: Path) -> str:
    """A record's id: its path below the dataset folder without the suffix (`100`,
    `p1/rest`), so equal file names in different folders stay different participants."""
    relative = Path(path).relative_to(root)
    return str(relative.with_name(relative.name.split(".")[0]))


def _manifest_sources(path: Path) -> list[Source]:
    records, problems = read_manifest(path)
    if problems:
        raise DataError(
            f"{path}: {len(problems)} problem(s) in the manifest; run medssl validate on it",
            [str(p) for p in problems],
        )
    return [
        Source(r.image, r.subject_id, r.label, r.split, r.extra.get("reading", ())) for r in records
    ]


def pick_leads(wanted: Sequence[str] | None, available: Sequence[str]) -> list[int] | None:
    """Channel indices for `wanted` (entries "II|MLII": first alternative present wins,
    case-insensitive), every channel when `wanted` is None, or None when one is missing.

    Example:
        >>> pick_leads(["II|MLII", "V5"], ["MLII", "V5"])
        [0, 1]
    """
    if wanted is None:
        return list(range(len(available)))
    lower = [a.strip().lower() for a in available]
    chosen = []
    for entry in wanted:
        hits = [
            lower.index(alt.strip().lower())
            for alt in entry.split("|")
            if alt.strip().lower() in lower
        ]
        if not hits:
            return None
        chosen.append(hits[0])
    return chosen
