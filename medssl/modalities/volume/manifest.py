"""Dataset discovery for volumes: a folder of scans, a manifest (CSV / JSON), or an npz array
file becomes a list of `Record`s, with every structural problem found on the way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from medssl.modalities.base import Problem, Record
from medssl.modalities.manifest import (
    MISSING,
    ManifestRow,
    duplicate_problems,
    exists_problem,
    listed_records,
    manifest_entries,
    npz_records,
    parse_number,
    resolve_path,
    unique_stems,
    walk_folder,
)
from medssl.modalities.volume.dicom import dicom_files
from medssl.modalities.volume.readers import (
    NIFTI_SUFFIXES,
    NRRD_SUFFIXES,
    file_stem,
    file_suffix,
    split_npz_ref,
)

SCAN_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES
MASK_SUFFIXES = ("_seg", "_label", "_mask", "-label", "-seg", "_labels")
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")  # nnU-Net's per-channel suffix, e.g. case_0000


def discover(path: str | Path) -> tuple[list[Record], list[Problem]]:
    """Records of a folder, manifest or npz, and the problems found while listing them
    (no scan is opened, except an npz's label array)."""
    p = Path(path)
    if split_npz_ref(str(p)) is None and not p.exists():
        return [], [Problem(str(p), "does not exist; give a folder, a manifest CSV/JSON or an npz")]
    if p.is_dir():
        records, problems = _scan_folder(p)
    elif file_suffix(p) == ".npz":
        records, problems = npz_records(p)
    elif p.suffix.lower() in (".csv", ".json"):
        records, problems = _scan_manifest(p)
    elif file_suffix(p) in SCAN_SUFFIXES or file_suffix(p) == ".dcm":
        records, problems = [Record(subject_id=file_stem(p), image=str(p))], []
    else:
        return [], [Problem(str(p), "is not a folder, a manifest (.csv/.json) or an npz file")]
    problems += duplicate_problems(records, str(p), item="scan")
    return records, problems


def scan_records(path: str | Path) -> list[Record]:
    """Records of a dataset; DataError listing every problem when it cannot be listed."""
    return listed_records(
        path,
        *discover(path),
        validate="validate",
        items="scans (NIfTI, NRRD, DICOM series or npz items)",
    )


def _scan_manifest(path: Path) -> tuple[list[Record], list[Problem]]:
    entries, problems = manifest_entries(path)
    records = []
    for entry in entries:
        record, row_problems = _manifest_record(entry, path)
        problems += row_problems
        records.append(record)
    return records, problems


def _manifest_record(entry: ManifestRow, manifest: Path) -> tuple[Record, list[Problem]]:
    """A scan's record: its mask from the mask column, or from a label that is a path; a
    class label or regression target from a numeric label."""
    problems: list[Problem] = []
    base = manifest.parent
    mask = entry.text("mask")
    mask_path = resolve_path(mask, base) if mask else None
    label: Any = None
    raw_label = entry.text("label")
    if raw_label.lower() not in MISSING:
        label = parse_number(raw_label)
        if label is None:
            candidate = resolve_path(raw_label, base)
            if os.path.exists(candidate) or file_suffix(candidate) in SCAN_SUFFIXES:
                if mask_path is not None:
                    problems.append(
                        Problem(
                            str(manifest),
                            f"{entry.where} gives both a mask column and a mask path in label; "
                            "keep one",
                        )
                    )
                mask_path = candidate
            else:
                problems.append(
                    Problem(
                        str(manifest),
                        f"{entry.where}: label {raw_label!r} is neither "
                        "a number nor an existing mask file",
                    )
                )
    if mask_path is not None:
        problems += exists_problem(mask_path)
    record = Record(
        subject_id=entry.subject_id,
        image=entry.image,
        label=label,
        mask=mask_path,
        split=entry.split,
        extra=entry.extra,
    )
    return record, problems


def _scan_folder(folder: Path) -> tuple[list[Record], list[Problem]]:
    if (folder / "imagesTr").is_dir():
        return _scan_nnunet(folder)
    scans: list[Path] = []
    masks: list[Path] = []
    for here, names in walk_folder(folder):
        if dicom_files(here):
            scans.append(here)
        for name in names:
            if file_suffix(name) not in SCAN_SUFFIXES:
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
    # The file stem (a series folder's name) names the subject; the relative path where two share it.
    subjects = unique_stems(scans, folder, lambda s: file_stem(s) if s.is_file() else s.name)
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
