"""Dataset discovery for volumes: a folder of scans, a manifest (CSV / JSON), or an npz array
file becomes a list of `Record`s, with every structural problem found on the way.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.base import SPLIT_NAMES, Problem, Record, manifest_rows
from medssl.modalities.volume.dicom import dicom_files
from medssl.modalities.volume.readers import (
    NIFTI_SUFFIXES,
    NRRD_SUFFIXES,
    file_stem,
    file_suffix,
    npz_layout,
    npz_shapes,
    split_npz_ref,
)
from medssl.platform.errors import DataError

SCAN_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES
MASK_SUFFIXES = ("_seg", "_label", "_mask", "-label", "-seg", "_labels")
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")  # nnU-Net's per-channel suffix, e.g. case_0000
_MISSING = {"nan", "na", "n/a", "none", "null"}
_RESERVED = {"subject_id", "image", "label", "mask", "split"}


def discover(path: str | Path) -> tuple[list[Record], list[Problem]]:
    """Records of a folder, manifest or npz, and the problems found while listing them
    (no scan is opened, except an npz's label array)."""
    p = Path(path)
    if split_npz_ref(str(p)) is None and not p.exists():
        return [], [Problem(str(p), "does not exist; give a folder, a manifest CSV/JSON or an npz")]
    if p.is_dir():
        records, problems = _scan_folder(p)
    elif file_suffix(p) == ".npz":
        records, problems = _scan_npz(p)
    elif p.suffix.lower() in (".csv", ".json"):
        records, problems = _scan_manifest(p)
    elif file_suffix(p) in SCAN_SUFFIXES or file_suffix(p) == ".dcm":
        records, problems = [Record(subject_id=file_stem(p), image=str(p))], []
    else:
        return [], [Problem(str(p), "is not a folder, a manifest (.csv/.json) or an npz file")]
    problems += _duplicate_problems(records, str(p))
    return records, problems


def scan_records(path: str | Path) -> list[Record]:
    """Records of a dataset; DataError listing every problem when it cannot be listed."""
    records, problems = discover(path)
    if problems:
        raise DataError(
            f"{path}: {len(problems)} problem(s) while listing the dataset, first: {problems[0]}; "
            "run `validate` for the full list",
            [str(p) for p in problems],
        )
    if not records:
        raise DataError(f"{path} contains no scans (NIfTI, NRRD, DICOM series or npz items)")
    return records


def _scan_manifest(path: Path) -> tuple[list[Record], list[Problem]]:
    try:
        rows = manifest_rows(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return [], [Problem(str(path), f"cannot be parsed as a manifest ({err})")]
    if not rows:
        return [], [Problem(str(path), "manifest lists no rows")]
    columns = set().union(*(row.keys() for row in rows))
    problems = []
    for column in ("subject_id", "image"):
        if column not in columns:
            problems.append(Problem(str(path), f"manifest has no '{column}' column; add one"))
    if problems:
        return [], problems
    base = path.parent
    records = []
    for line, row in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
        where = f"row {line}" if path.suffix.lower() == ".csv" else f"item {line}"
        record, row_problems = _manifest_record(row, base, path, where)
        problems += row_problems
        if record is not None:
            records.append(record)
    return records, problems


def _manifest_record(
    row: dict[str, Any], base: Path, manifest: Path, where: str
) -> tuple[Record | None, list[Problem]]:
    problems: list[Problem] = []
    subject = _text(row.get("subject_id"))
    image = _text(row.get("image"))
    if not subject:
        problems.append(Problem(str(manifest), f"{where} has an empty subject_id"))
    if not image:
        problems.append(Problem(str(manifest), f"{where} has an empty image"))
    if problems:
        return None, problems
    image_path = _resolve(image, base)
    problems += _exists_problem(image_path)
    mask = _text(row.get("mask"))
    mask_path = _resolve(mask, base) if mask else None
    label: Any = None
    raw_label = _text(row.get("label"))
    if raw_label and raw_label.lower() not in _MISSING:
        label = _parse_number(raw_label)
        if label is None:
            candidate = _resolve(raw_label, base)
            if os.path.exists(candidate) or file_suffix(candidate) in SCAN_SUFFIXES:
                if mask_path is not None:
                    problems.append(
                        Problem(
                            str(manifest),
                            f"{where} gives both a mask column and a mask path in label; keep one",
                        )
                    )
                mask_path = candidate
            else:
                problems.append(
                    Problem(
                        str(manifest),
                        f"{where}: label {raw_label!r} is neither "
                        "a number nor an existing mask file",
                    )
                )
    if mask_path is not None:
        problems += _exists_problem(mask_path)
    split = _text(row.get("split"))
    if split and split.lower() not in SPLIT_NAMES:
        problems.append(Problem(str(manifest), f"{where}: split {split!r} is not train/val/test"))
    extra = {k: v for k, v in row.items() if k not in _RESERVED}
    record = Record(
        subject_id=subject,
        image=image_path,
        label=label,
        mask=mask_path,
        split=SPLIT_NAMES.get(split.lower()) if split else None,
        extra=extra,
    )
    return record, problems


def _scan_folder(folder: Path) -> tuple[list[Record], list[Problem]]:
    if (folder / "imagesTr").is_dir():
        return _scan_nnunet(folder)
    scans: list[Path] = []
    masks: list[Path] = []
    seen: set[str] = set()
    # Symlinked folders are followed (data often is linked in); `seen` stops link loops.
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if dicom_files(here):
            scans.append(here)
        for name in sorted(filenames):
            if name.startswith(".") or file_suffix(name) not in SCAN_SUFFIXES:
                continue
            target = masks if file_stem(name).lower().endswith(MASK_SUFFIXES) else scans
            target.append(here / name)
    by_key = {(s.parent, file_stem(s) if s.is_file() else s.name): s for s in scans}
    paired: dict[Path, Path] = {}
    problems = []
    for m in masks:
        stem = file_stem(m)
        image_stem = next(stem[: -len(s)] for s in MASK_SUFFIXES if stem.lower().endswith(s))
        image = by_key.get((m.parent, image_stem))
        if image is None:
            problems.append(
                Problem(
                    str(m),
                    f"looks like a mask but no image named "
                    f"'{image_stem}' sits beside it; rename it or use a "
                    "manifest",
                )
            )
        elif image in paired:
            problems.append(Problem(str(m), f"a second mask for {image}; keep one"))
        else:
            paired[image] = m
    subjects = _subject_ids(scans, folder)
    records = [
        Record(subject_id=subjects[s], image=str(s), mask=str(paired[s]) if s in paired else None)
        for s in scans
    ]
    return records, problems


def _scan_nnunet(folder: Path) -> tuple[list[Record], list[Problem]]:
    """imagesTr/ + labelsTr/ (and imagesTs/), the Medical Segmentation Decathlon layout."""
    records, problems = [], []
    labels_dir = folder / "labelsTr"
    for images_dir, split in ((folder / "imagesTr", None), (folder / "imagesTs", "test")):
        if not images_dir.is_dir():
            continue
        for image in sorted(images_dir.iterdir()):
            if image.name.startswith(".") or file_suffix(image) not in SCAN_SUFFIXES:
                continue
            case = _CHANNEL_SUFFIX.sub("", file_stem(image))
            mask = None
            if split is None:
                found = [labels_dir / f"{case}{s}" for s in SCAN_SUFFIXES]
                found = [m for m in found if m.exists()]
                if found:
                    mask = str(found[0])
                else:
                    problems.append(Problem(str(image), f"no label named {case}.* in labelsTr/"))
            records.append(Record(subject_id=case, image=str(image), mask=mask, split=split))
    used = {r.mask for r in records}
    if labels_dir.is_dir():
        for label in sorted(labels_dir.iterdir()):
            if file_suffix(label) in SCAN_SUFFIXES and str(label) not in used:
                problems.append(Problem(str(label), "a label with no image in imagesTr/"))
    return records, problems


def _scan_npz(path: Path) -> tuple[list[Record], list[Problem]]:
    try:
        shapes = npz_shapes(path)
        layout = npz_layout(shapes, path)
        with np.load(path, allow_pickle=False) as npz:
            # Only the small label arrays are decompressed here, never the images.
            all_labels = {
                s: np.asarray(npz[f"{s}_labels"]) for s, _ in layout if f"{s}_labels" in shapes
            }
    except DataError as err:
        return [], [Problem(str(path), str(err).removeprefix(f"{path} "))]
    except Exception as err:  # noqa: BLE001 - a broken member of the archive
        return [], [Problem(str(path), f"cannot be read as an npz file ({err})")]
    records, problems, start = [], [], 0
    for split, n in layout:
        labels = all_labels.get(split)
        if labels is not None and len(labels) != n:
            problems.append(
                Problem(str(path), f"{split}_labels has {len(labels)} rows for {n} images")
            )
            labels = None
        for i in range(n):
            label: Any = None
            if labels is not None:
                row = np.asarray(labels[i]).reshape(-1)
                label = row[0].item() if row.size == 1 else row.tolist()
            records.append(
                Record(
                    subject_id=str(start + i), image=f"{path}#{start + i}", label=label, split=split
                )
            )
        start += n
    return records, problems


def _duplicate_problems(records: list[Record], where: str) -> list[Problem]:
    """A subject may own several scans (baseline, follow-up: splits keep them together), but
    one scan listed twice, or under two subjects, would leak across a subject-level split."""
    subjects: dict[str, list[str]] = defaultdict(list)
    for r in records:
        subjects[r.image].append(r.subject_id)
    problems = []
    for image, owners in subjects.items():
        if len(owners) < 2:
            continue
        if len(set(owners)) > 1:
            names = ", ".join(repr(o) for o in sorted(set(owners)))
            msg = f"{image} is listed under {len(set(owners))} subject ids ({names})"
        else:
            msg = f"{image} is listed {len(owners)} times for subject_id {owners[0]!r}"
        problems.append(Problem(where, msg + "; list every scan once"))
    return problems


def _subject_ids(scans: list[Path], root: Path) -> dict[Path, str]:
    """The file stem, or the relative path where two scans share a stem."""
    stems = {s: file_stem(s) if s.is_file() else s.name for s in scans}
    counts: dict[str, int] = defaultdict(int)
    for stem in stems.values():
        counts[stem] += 1
    out = {}
    for s, stem in stems.items():
        if counts[stem] > 1:
            rel = s.relative_to(root) if s != root else Path(s.name)
            stem = str(rel.parent / file_stem(rel)) if s.is_file() else rel.as_posix()
        out[s] = Path(stem).as_posix()
    return out


def _resolve(value: str, base: Path) -> str:
    npz = split_npz_ref(value)
    if npz is not None:
        return f"{os.path.abspath(base / npz[0])}#{npz[1]}"
    return os.path.abspath(base / os.path.expanduser(value))


def _exists_problem(path: str) -> list[Problem]:
    npz = split_npz_ref(path)
    if os.path.exists(npz[0] if npz else path):
        return []
    return [Problem(path, "does not exist; fix the path in the manifest")]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _parse_number(text: str) -> int | float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and re.fullmatch(r"[+-]?\d+(\.0*)?", text) else number
