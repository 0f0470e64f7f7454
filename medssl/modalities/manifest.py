"""What every adapter's dataset discovery shares: the rows of a manifest (CSV / JSON), the
items of a MedMNIST-style npz, folder walks, and the check that no item is listed twice.

Each adapter turns these into its `Record`s and adds what is its own (masks for volumes,
slices of volumes for 2-D images, its file types)."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.base import SPLIT_NAMES, Problem, Record, manifest_rows
from medssl.modalities.npz import npz_layout, npz_shapes, split_npz_ref
from medssl.platform.errors import DataError, error_summary

#: Cell values that mean "no value" in a manifest.
MISSING = {"", "nan", "na", "n/a", "none", "null"}
#: Manifest columns with a meaning; the others travel in `Record.extra`.
RESERVED = {"subject_id", "image", "label", "mask", "split"}
_INTEGER = re.compile(r"[+-]?\d+(\.0*)?")


@dataclass
class ManifestRow:
    """One usable row of a manifest: where it is (``row 3`` / ``item 2``), its subject, its
    image as an absolute path, its split (normalised, or None) and the raw cells."""

    where: str
    subject_id: str
    image: str
    split: str | None
    cells: dict[str, Any]

    @property
    def extra(self) -> dict[str, Any]:
        """The cells outside the reserved columns (they travel in `Record.extra`)."""
        return {k: v for k, v in self.cells.items() if k not in RESERVED}

    def text(self, column: str) -> str:
        """The stripped text of a cell ('' when absent)."""
        return cell_text(self.cells.get(column))


def manifest_entries(path: Path) -> tuple[list[ManifestRow], list[Problem]]:
    """The rows of a manifest with a `subject_id` and an `image` column: each row's subject,
    image (resolved against the manifest's folder, checked to exist) and split, and one
    problem per bad row or per missing column. Rows with an empty subject or image are left
    out (with their problem)."""
    try:
        rows = manifest_rows(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return [], [Problem(str(path), f"cannot be parsed as a manifest ({err})")]
    if not rows:
        return [], [Problem(str(path), "manifest lists no rows")]
    columns = set().union(*(row.keys() for row in rows))
    missing = [c for c in ("subject_id", "image") if c not in columns]
    if missing:
        return [], [Problem(str(path), f"manifest has no '{c}' column; add one") for c in missing]
    csv_file = path.suffix.lower() == ".csv"
    entries: list[ManifestRow] = []
    problems: list[Problem] = []
    for line, row in enumerate(rows, start=2 if csv_file else 1):
        where = f"row {line}" if csv_file else f"item {line}"
        subject, image = cell_text(row.get("subject_id")), cell_text(row.get("image"))
        empty = [c for c, value in (("subject_id", subject), ("image", image)) if not value]
        if empty:
            problems += [Problem(str(path), f"{where} has an empty {c}") for c in empty]
            continue
        image_path = resolve_path(image, path.parent)
        problems += exists_problem(image_path)
        split = cell_text(row.get("split"))
        if split and split.lower() not in SPLIT_NAMES:
            problems.append(Problem(str(path), f"{where}: split {split!r} is not train/val/test"))
        entries.append(
            ManifestRow(
                where=where,
                subject_id=subject,
                image=image_path,
                split=SPLIT_NAMES.get(split.lower()) if split else None,
                cells=row,
            )
        )
    return entries, problems


def listed_records(
    path: str | Path, records: list[Record], problems: list[Problem], validate: str, items: str
) -> list[Record]:
    """`records` of the dataset at `path`, or a DataError listing every problem (the first
    in its message, with the `validate` command that lists them all) or saying that it holds
    no `items`."""
    if problems:
        raise DataError(
            f"{path}: {len(problems)} problem(s) while listing the dataset, first: {problems[0]}; "
            f"run `{validate}` for the full list",
            [str(p) for p in problems],
        )
    if not records:
        raise DataError(f"{path} contains no {items}")
    return records


def npz_records(
    path: Path,
    check: Callable[[dict[str, tuple[int, ...]], list[tuple[str, int]]], list[str]] | None = None,
) -> tuple[list[Record], list[Problem]]:
    """One record `<file>#<index>` per item of a MedMNIST-style npz (splits in train, val,
    test order), its split from the array it sits in, its label from `<split>_labels` (a
    scalar, or a list for multi-label rows); each item is its own subject (MedMNIST keeps no
    patient ids). `check(shapes, layout)` may refuse the file's arrays, one message per
    problem. Only the small label arrays are decompressed, never the images."""
    try:
        shapes = npz_shapes(path)
        layout = npz_layout(shapes, path)
        refused = check(shapes, layout) if check is not None else []
        if refused:
            return [], [Problem(str(path), message) for message in refused]
        with np.load(path, allow_pickle=False) as npz:
            labels = {
                s: np.asarray(npz[f"{s}_labels"]) for s, _ in layout if f"{s}_labels" in shapes
            }
    except DataError as err:
        return [], [Problem(str(path), str(err).removeprefix(f"{path} ").removeprefix(f"{path}: "))]
    except Exception as err:  # noqa: BLE001 - a broken member of the archive
        return [], [Problem(str(path), f"cannot be read as an npz file ({error_summary(err)})")]
    records: list[Record] = []
    problems: list[Problem] = []
    start = 0
    for split, n in layout:
        split_labels = labels.get(split)
        if split_labels is not None and len(split_labels) != n:
            problems.append(
                Problem(str(path), f"{split}_labels has {len(split_labels)} rows for {n} images")
            )
            split_labels = None
        rows = None if split_labels is None else split_labels.reshape(n, -1)
        for i in range(n):
            label: Any = None
            if rows is not None:
                label = rows[i, 0].item() if rows.shape[1] == 1 else rows[i].tolist()
            index = start + i
            records.append(
                Record(subject_id=str(index), image=f"{path}#{index}", label=label, split=split)
            )
        start += n
    return records, problems


def walk_folder(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """(folder, file names) for `folder` and every folder below it, sorted, hidden entries
    left out. Symlinked folders are followed (data is often linked in), each real folder
    once, so link loops end."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), sorted(name for name in filenames if not name.startswith("."))


def duplicate_problems(records: list[Record], where: str, item: str = "scan") -> list[Problem]:
    """A subject may own several items (baseline, follow-up: splits keep them together), but
    one item listed twice, or under two subjects, would leak across a subject-level split.
    `item` names what is listed ("scan", "image") in the message."""
    owners: dict[str, list[str]] = defaultdict(list)
    for r in records:
        owners[r.image].append(r.subject_id)
    problems = []
    for image, subjects in owners.items():
        if len(subjects) < 2:
            continue
        if len(set(subjects)) > 1:
            names = ", ".join(repr(s) for s in sorted(set(subjects)))
            message = f"{image} is listed under {len(set(subjects))} subject ids ({names})"
        else:
            message = f"{image} is listed {len(subjects)} times for subject_id {subjects[0]!r}"
        problems.append(Problem(where, f"{message}; list every {item} once"))
    return problems


def unique_stems(paths: list[Path], root: Path, stem: Callable[[Path], str]) -> dict[Path, str]:
    """A subject id for each path: its stem, or its path relative to `root` without the
    suffix where two paths share a stem."""
    stems = {p: stem(p) for p in paths}
    counts: dict[str, int] = defaultdict(int)
    for s in stems.values():
        counts[s] += 1
    out = {}
    for p, s in stems.items():
        if counts[s] > 1:
            relative = p.relative_to(root) if p != root else Path(p.name)
            s = (relative.parent / s).as_posix()
        out[p] = Path(s).as_posix()
    return out


def resolve_path(value: str, base: Path) -> str:
    """A manifest cell as an absolute path (relative ones from the manifest's folder, `~`
    expanded), keeping an npz item's `#<index>`."""
    npz = split_npz_ref(value)
    if npz is not None:
        return f"{os.path.abspath(base / os.path.expanduser(npz[0]))}#{npz[1]}"
    return os.path.abspath(base / os.path.expanduser(value))


def exists_problem(path: str) -> list[Problem]:
    """[] when the file (or an npz item's archive) exists, else the problem to fix."""
    npz = split_npz_ref(path)
    if os.path.exists(npz[0] if npz else path):
        return []
    return [Problem(path, "does not exist; fix the path in the manifest")]


def cell_text(value: Any) -> str:
    """A manifest cell as stripped text ('' for None)."""
    return "" if value is None else str(value).strip()


def parse_number(text: str) -> int | float | None:
    """An int for integer text ('3', '3.0'), a float for other numbers, None otherwise."""
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and _INTEGER.fullmatch(text) else number
