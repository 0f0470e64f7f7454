"""validate: every broken record of a mixed dataset is named at once, and nothing is written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medssl.modalities.volume.validate import validate_dataset


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> str:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path.name


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            stat = os.stat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (stat.st_size, stat.st_mtime_ns)
    return out


def _mixed_dataset(root: Path, ct_series_writer: Callable, hu_volume: Callable) -> dict[str, str]:
    """A manifest with two good scans and one record per kind of breakage; returns
    {kind: the path that must be named}."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(6, 6, 6)).astype(np.float32)
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    _nifti(root / "good1.nii.gz", image)
    _nifti(root / "good1_seg.nii.gz", mask)
    _nifti(root / "good2.nii", image)
    # Random floats barely compress, so half of the file is half of the voxels.
    _nifti(root / "truncated.nii.gz", rng.normal(size=(20, 20, 20)).astype(np.float32))
    raw = (root / "truncated.nii.gz").read_bytes()
    (root / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    files = ct_series_writer(root / "series_gap", hu_volume((4, 4, 6)))
    files[3].unlink()
    _nifti(root / "shape_img.nii.gz", image)
    _nifti(root / "shape_seg.nii.gz", np.zeros((6, 6, 5), np.uint8) + 1)
    _nifti(root / "moved_img.nii.gz", image)
    moved = np.eye(4)
    moved[:3, 3] = [4.0, 0.0, 0.0]
    _nifti(root / "moved_seg.nii.gz", mask, moved)
    _nifti(root / "float_seg.nii.gz", mask.astype(np.float32) * 0.5)
    _nifti(root / "negative_seg.nii.gz", mask.astype(np.int16) - 1)
    _nifti(root / "empty_seg.nii.gz", np.zeros((6, 6, 6), np.uint8))
    (root / "noise.nii").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "notes.txt").write_text("patient notes, not a scan\n")
    rows = [
        ("s1", "good1.nii.gz", "good1_seg.nii.gz"),
        ("s2", "good2.nii", ""),
        ("s3", "truncated.nii.gz", ""),
        ("s4", "series_gap", ""),
        ("s5", "shape_img.nii.gz", "shape_seg.nii.gz"),
        ("s6", "moved_img.nii.gz", "moved_seg.nii.gz"),
        ("s7", "good2.nii", "float_seg.nii.gz"),
        ("s8", "good2.nii", "negative_seg.nii.gz"),
        ("s9", "good2.nii", "empty_seg.nii.gz"),
        ("s10", "noise.nii", ""),
        ("s11", "notes.txt", ""),
        ("s12", "does_not_exist.nii.gz", ""),
        ("s1", "good1.nii.gz", "good1_seg.nii.gz"),
    ]
    text = "subject_id,image,mask\n" + "".join(f"{s},{i},{m}\n" for s, i, m in rows)
    (root / "manifest.csv").write_text(text)
    p = {name: str(root / name) for name in os.listdir(root)}
    return {
        "truncated": p["truncated.nii.gz"],
        "missing slice": p["series_gap"],
        "shape": p["shape_seg.nii.gz"],
        "affine": p["moved_seg.nii.gz"],
        "non-integer": p["float_seg.nii.gz"],
        "negative": p["negative_seg.nii.gz"],
        "empty": p["empty_seg.nii.gz"],
        "noise": p["noise.nii"],
        "text": p["notes.txt"],
        "absent": str(root / "does_not_exist.nii.gz"),
        "duplicate": str(root / "manifest.csv"),
    }


def test_validate_names_every_problem_and_writes_nothing(
    tmp_path: Path, ct_series_writer: Callable, hu_volume: Callable
) -> None:
    expected = _mixed_dataset(tmp_path, ct_series_writer, hu_volume)
    before = _snapshot(tmp_path)
    problems = validate_dataset(tmp_path / "manifest.csv")
    assert _snapshot(tmp_path) == before
    by_path: dict[str, list[str]] = {}
    for p in problems:
        by_path.setdefault(p.path, []).append(p.message)
    keywords = {
        "truncated": "cannot be read",
        "missing slice": "missing slice",
        "shape": "shape (6, 6, 5)",
        "affine": "origin",
        "non-integer": "non-integer",
        "negative": "negative",
        "empty": "empty",
        "noise": "cannot be read",
        "text": "not a NIfTI",
        "absent": "does not exist",
        "duplicate": "listed 2 times for subject_id 's1'",
    }
    for kind, path in expected.items():
        assert path in by_path, f"{kind}: {path} not named in {problems}"
        assert any(keywords[kind] in m for m in by_path[path]), (kind, by_path[path])
    good = {
        str(tmp_path / n)
        for n in (
            "good1.nii.gz",
            "good1_seg.nii.gz",
            "good2.nii",
            "shape_img.nii.gz",
            "moved_img.nii.gz",
        )
    }
    assert not good & set(by_path), [str(p) for p in problems if p.path in good]
    # Each problem is one short line.
    assert all("\n" not in str(p) and len(p.message) < 240 for p in problems)


def test_validate_clean_folder_has_no_problems(tmp_path: Path) -> None:
    mask = np.zeros((5, 5, 5), np.uint8)
    mask[1, 1, 1] = 2
    _nifti(tmp_path / "ct.nii.gz", np.ones((5, 5, 5), np.float32))
    _nifti(tmp_path / "ct_seg.nii.gz", mask)
    assert validate_dataset(tmp_path) == []


@pytest.mark.integration
def test_validate_real_folders(shared_data: Path) -> None:
    root = shared_data / "image3d"
    assert validate_dataset(root / "pyradiomics" / "brain1_image.nrrd") == []
    problems = validate_dataset(root / "monai" / "CT_DICOM")
    assert [p.path for p in problems] == [str(root / "monai" / "CT_DICOM")]
    assert "missing slice" in problems[0].message
