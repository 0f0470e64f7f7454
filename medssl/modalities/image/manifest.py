"""Dataset discovery for radiographs: a folder of images, a manifest (CSV / JSON) or a
MedMNIST-style npz becomes a list of `Record`s, with every structural problem found on the way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medssl.modalities.base import Problem, Record
from medssl.modalities.image.readers import (
    IMAGE_SUFFIXES,
    image_suffix,
    npz_image_problem,
)
from medssl.modalities.image.slices import VOLUME_SUFFIXES, axial_count
from medssl.modalities.manifest import (
    MISSING,
    ManifestRow,
    cell_text,
    duplicate_problems,
    listed_records,
    manifest_entries,
    npz_records,
    parse_number,
    resolve_path,
    unique_stems,
    walk_folder,
)
from medssl.modalities.volume.dicom import has_dicom_preamble
from medssl.platform.errors import DataError

#: Manifest columns naming a file that belongs to the row's image (its report, its ECG).
PAIRED_FILE_COLUMNS = ("report", "ecg")


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
    return records, problems + duplicate_problems(records, str(p), item="image")


def scan_records(path: str | Path) -> list[Record]:
    """Records of a dataset; DataError listing every problem when it cannot be listed."""
    return listed_records(
        path,
        *discover(path),
        validate="medssl validate --modality image",
        items="radiographs (PNG, JPEG, DICOM or npz items)",
    )


def _scan_folder(folder: Path) -> tuple[list[Record], list[Problem]]:
    """Every image file under `folder`; other files, e.g. report archives beside the images,
    are left alone. DICOM files without a suffix are recognised by their Part-10 marker.
    The file stem names the subject; two files sharing a stem are told apart by folder."""
    found: list[Path] = []
    for here, names in walk_folder(folder):
        for name in names:
            suffix = image_suffix(name)
            if suffix in IMAGE_SUFFIXES or (not suffix and has_dicom_preamble(here / name)):
                found.append(here / name)
    subjects = unique_stems(found, folder, _stem)
    return [Record(subject_id=subjects[f], image=str(f)) for f in found], []


def scan_npz(path: Path) -> tuple[list[Record], list[Problem]]:
    """One record `<file>#<index>` per image of a MedMNIST-style npz (see `npz_records`),
    once every images array has a 2-D image layout."""

    def check(shapes: dict[str, tuple[int, ...]], layout: list[tuple[str, int]]) -> list[str]:
        found = (npz_image_problem(shapes[f"{split}_images"], f"{split}_images") for split, _ in layout)
        return [problem for problem in found if problem]

    return npz_records(path, check)


def _scan_manifest(path: Path) -> tuple[list[Record], list[Problem]]:
    entries, problems = manifest_entries(path)
    records: list[Record] = []
    for entry in entries:
        record, row_problems = _manifest_record(entry, path)
        problems += row_problems
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


def _manifest_record(entry: ManifestRow, manifest: Path) -> tuple[Record, list[Problem]]:
    """A radiograph's record: a numeric label (or none); masks are not supported yet."""
    problems = []
    label: Any = None
    raw_label = entry.text("label")
    if raw_label.lower() not in MISSING:
        label = parse_number(raw_label)
        if label is None:
            problems.append(
                Problem(str(manifest), f"{entry.where}: label {raw_label!r} is not a number")
            )
    if entry.text("mask").lower() not in MISSING:
        problems.append(
            Problem(
                str(manifest),
                f"{entry.where} gives a mask, but image masks are not supported yet; "
                "empty the mask column",
            )
        )
    extra = dict(entry.extra)
    for column in PAIRED_FILE_COLUMNS:  # paired files resolve like the image does
        if cell_text(extra.get(column)):
            extra[column] = resolve_path(cell_text(extra[column]), manifest.parent)
    record = Record(
        subject_id=entry.subject_id,
        image=entry.image,
        label=label,
        split=entry.split,
        extra=extra,
    )
    return record, problems


def _stem(path: Path) -> str:
    suffix = image_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name
