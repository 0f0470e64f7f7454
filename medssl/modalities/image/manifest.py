"""Dataset discovery for radiographs: a folder of images, a manifest (CSV / JSON) or a
MedMNIST-style npz becomes a list of `Record`s, with every structural problem found on the way.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.base import SPLIT_NAMES, Problem, Record, manifest_rows
from medssl.modalities.image.readers import (
    IMAGE_SUFFIXES,
    image_suffix,
    npz_image_problem,
)
from medssl.modalities.image.slices import VOLUME_SUFFIXES, axial_count
from medssl.modalities.volume.dicom import has_dicom_preamble
from medssl.modalities.volume.readers import npz_layout, npz_shapes, split_npz_ref
from medssl.modalities.volume.volume import error_summary
from medssl.platform.errors import DataError

_MISSING = {"", "nan", "na", "n/a", "none", "null"}
_RESERVED = {"subject_id", "image", "label", "split", "mask"}
_NUMBER = re.compile(r"[+-]?\d+(\.0*)?")


def discover(path: str | Path) -> tuple[list[Record], list[Problem]]:
    """Records of a folder, manifest, npz or single image, and the problems found while
    listing them (no image is decoded; an npz's label arrays are read)."""
    p = Path(path)
    if not p.exists():
        return [], [Problem(str(p), "does not exist; give a folder, a manifest CSV/JSON or an npz")]
    if p.is_dir():
        records, problems = _scan_folder(p)
    elif image_suffix(p) == ".npz":
        records, problems = scan_npz(p)
    elif p.suffix.lower() in (".csv", ".json"):
        records, problems = _scan_manifest(p)
    elif image_suffix(p) in VOLUME_SUFFIXES:
        records, problems = volume_slice_records(Record(subject_id=_stem(p), image=str(p)))
    elif image_suffix(p) in IMAGE_SUFFIXES or has_dicom_preamble(p):
        records, problems = [Record(subject_id=_stem(p), image=str(p))], []
    else:
        return [], [
            Problem(str(p), "is not a folder, a manifest (.csv/.json), an npz or an image file")
        ]
    return records, problems + _duplicate_problems(records, str(p))


def scan_records(path: str | Path) -> list[Record]:
    """Records of a dataset; DataError listing every problem when it cannot be listed."""
    records, problems = discover(path)
    if problems:
        raise DataError(
            f"{path}: {len(problems)} problem(s) while listing the dataset, first: {problems[0]}; "
            "run `medssl validate --modality image` for the full list",
            [str(p) for p in problems],
        )
    if not records:
        raise DataError(f"{path} contains no radiographs (PNG, JPEG, DICOM or npz items)")
    return records


def _scan_folder(folder: Path) -> tuple[list[Record], list[Problem]]:
    """Every image file under `folder` (symlinked folders followed once); other files, e.g.
    report archives beside the images, are left alone. DICOM files without a suffix are
    recognised by their Part-10 marker."""
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            suffix = image_suffix(name)
            if suffix in IMAGE_SUFFIXES or (not suffix and has_dicom_preamble(path)):
                found.append(path)
    counts: dict[str, int] = defaultdict(int)
    for f in found:
        counts[_stem(f)] += 1
    records = []
    for f in found:
        # The file stem names the subject; two files sharing a stem are told apart by folder.
        subject = (
            _stem(f) if counts[_stem(f)] == 1 else f.relative_to(folder).with_suffix("").as_posix()
        )
        records.append(Record(subject_id=subject, image=str(f)))
    return records, []


def scan_npz(path: Path) -> tuple[list[Record], list[Problem]]:
    """One record `<file>#<index>` per image of a MedMNIST-style npz (train, val, test in that
    order), its split from the array it sits in, its label from `<split>_labels`; each image
    is its own subject (MedMNIST keeps no patient ids)."""
    try:
        shapes = npz_shapes(path)
        layout = npz_layout(shapes, path)
        problems = [
            Problem(str(path), problem)
            for split, _ in layout
            if (problem := npz_image_problem(shapes[f"{split}_images"], f"{split}_images"))
        ]
        if problems:
            return [], problems
        with np.load(path, allow_pickle=False) as npz:
            labels = {
                s: np.asarray(npz[f"{s}_labels"]) for s, _ in layout if f"{s}_labels" in shapes
            }
    except DataError as err:
        return [], [Problem(str(path), str(err).removeprefix(f"{path} ").removeprefix(f"{path}: "))]
    except Exception as err:  # noqa: BLE001 - a broken member of the archive
        return [], [Problem(str(path), f"cannot be read as an npz file ({error_summary(err)})")]
    records: list[Record] = []
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


def _scan_manifest(path: Path) -> tuple[list[Record], list[Problem]]:
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
    records: list[Record] = []
    problems: list[Problem] = []
    for line, row in enumerate(rows, start=2 if csv_file else 1):
        where = f"row {line}" if csv_file else f"item {line}"
        record, row_problems = _manifest_record(row, path, where)
        problems += row_problems
        if record is None:
            continue
        if image_suffix(record.image) in VOLUME_SUFFIXES and os.path.isfile(record.image):
            slices, slice_problems = volume_slice_records(record)
            records += slices
            problems += slice_problems
        else:
            records.append(record)
    return records, problems


def volume_slice_records(volume: Record) -> tuple[list[Record], list[Problem]]:
    """One record `<volume>#<k>` per axial slice of a NIfTI volume, each with the volume's
    subject, label and split (read from the header alone)."""
    try:
        n = axial_count(volume.image)
    except DataError as err:
        return [], [Problem(volume.image, str(err).removeprefix(f"{volume.image} "))]
    records = [
        Record(
            subject_id=volume.subject_id,
            image=f"{volume.image}#{k}",
            label=volume.label,
            split=volume.split,
            extra={**volume.extra, "volume": volume.image, "slice": k},
        )
        for k in range(n)
    ]
    return records, []


def _manifest_record(
    row: dict[str, Any], manifest: Path, where: str
) -> tuple[Record | None, list[Problem]]:
    subject, image = _text(row.get("subject_id")), _text(row.get("image"))
    problems = [
        Problem(str(manifest), f"{where} has an empty {column}")
        for column, value in (("subject_id", subject), ("image", image))
        if not value
    ]
    if problems:
        return None, problems
    image_path = _resolve(image, manifest.parent)
    npz = split_npz_ref(image_path)
    if not os.path.exists(npz[0] if npz else image_path):
        problems.append(Problem(image_path, "does not exist; fix the path in the manifest"))
    label: Any = None
    raw_label = _text(row.get("label"))
    if raw_label.lower() not in _MISSING:
        label = _number(raw_label)
        if label is None:
            problems.append(Problem(str(manifest), f"{where}: label {raw_label!r} is not a number"))
    if _text(row.get("mask")).lower() not in _MISSING:
        problems.append(
            Problem(
                str(manifest),
                f"{where} gives a mask, but image masks are not supported yet; "
                "empty the mask column",
            )
        )
    split = _text(row.get("split"))
    if split and split.lower() not in SPLIT_NAMES:
        problems.append(Problem(str(manifest), f"{where}: split {split!r} is not train/val/test"))
    record = Record(
        subject_id=subject,
        image=image_path,
        label=label,
        split=SPLIT_NAMES.get(split.lower()) if split else None,
        extra={k: v for k, v in row.items() if k not in _RESERVED},
    )
    return record, problems


def _duplicate_problems(records: list[Record], where: str) -> list[Problem]:
    """One image listed twice, or under two subjects, would leak across a subject split."""
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
        problems.append(Problem(where, message + "; list every image once"))
    return problems


def _stem(path: Path) -> str:
    suffix = image_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def _resolve(value: str, base: Path) -> str:
    npz = split_npz_ref(value)
    if npz is not None:
        return f"{os.path.abspath(base / os.path.expanduser(npz[0]))}#{npz[1]}"
    return os.path.abspath(base / os.path.expanduser(value))


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(text: str) -> int | float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and _NUMBER.fullmatch(text) else value
