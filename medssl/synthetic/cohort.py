"""A labelled phantom cohort on disk: NIfTI images and masks (some subjects as DICOM series),
`labels.json`, and a `manifest.csv` that is written last, so it never lists a missing file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from medssl.platform.engine.progress import tracked
from medssl.platform.io import atomic_write_json, atomic_write_text
from medssl.synthetic.anatomy import LABEL_MAP, generate_phantom, mr_from_ct
from medssl.synthetic.writers import write_dicom_series, write_nifti


def subject_seed(seed: int, index: int) -> int:
    """The phantom seed of subject `index` in a cohort written with `seed`."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_cohort(
    folder: str | Path,
    n_subjects: int = 8,
    *,
    seed: int = 0,
    dicom_subjects: int = 1,
    modality: str = "ct",
) -> Path:
    """Write a labelled phantom cohort and return its manifest (`manifest.csv`). With
    `modality="mr"` the images are T1-weighted-looking MR (`mr_from_ct`), same anatomy.

    Layout: `imagesTr/<id>.nii.gz` (int16 HU), `labelsTr/<id>.nii.gz` (uint8, `LABEL_MAP`),
    `dicom/<id>/` (a DICOM series instead of the NIfTI image, for the first `dicom_subjects`),
    `labels.json`, and `manifest.csv` with columns subject_id,image,label (label = mask path,
    relative to the manifest). The manifest is removed first and written last, so it never
    lists a file that is missing.

    Example:
        >>> manifest = write_cohort(tmp_path / "phantoms", n_subjects=2)  # doctest: +SKIP
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    if not 0 <= dicom_subjects <= n_subjects:
        raise ValueError(f"dicom_subjects must be in [0, {n_subjects}], got {dicom_subjects}")
    if modality not in ("ct", "mr"):
        raise ValueError(f"modality must be 'ct' or 'mr', got {modality!r}")
    if modality == "mr" and dicom_subjects:
        raise ValueError("MR phantoms are written as NIfTI only; set dicom_subjects=0")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.csv"
    manifest.unlink(missing_ok=True)
    rows = []
    for index in tracked(range(n_subjects), "writing phantoms", unit="phantom"):
        subject_id = f"phantom_{index:03d}"
        phantom_seed = subject_seed(seed, index)
        image, labels, affine = generate_phantom(phantom_seed)
        if modality == "mr":
            image = mr_from_ct(image, phantom_seed)
        label_ref = f"labelsTr/{subject_id}.nii.gz"
        write_nifti(root / label_ref, labels, affine)
        if index < dicom_subjects:
            image_ref = f"dicom/{subject_id}"
            write_dicom_series(
                root / image_ref,
                image,
                affine,
                seed=phantom_seed,
                patient_id=f"PHANTOM-{index + 1:04d}",
            )
        else:
            image_ref = f"imagesTr/{subject_id}.nii.gz"
            write_nifti(root / image_ref, image, affine)
        rows.append({"subject_id": subject_id, "image": image_ref, "label": label_ref})
    atomic_write_json(root / "labels.json", {str(k): v for k, v in LABEL_MAP.items()}, indent=2)
    atomic_write_text(manifest, _csv_text(rows))
    return manifest


def _csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["subject_id", "image", "label"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
