"""Axial slices of NIfTI volumes served as 2-D images: one record per slice with the
volume's subject, oriented as a reader views them, cached from one read of each volume."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medssl.modalities.image import ImageModality, read_image
from medssl.pipelines.splits import split_holdout
from medssl.platform.errors import DataError


def _volume(path: Path, shape=(6, 5, 4), zooms=(0.7, 0.9, 2.5), flip_x: bool = False) -> np.ndarray:
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    affine = np.diag([-zooms[0] if flip_x else zooms[0], zooms[1], zooms[2], 1.0])
    nib.save(nib.Nifti1Image(data, affine), path)
    return data


@pytest.mark.parametrize("flip_x", [False, True])
def test_slices_are_shown_as_a_reader_views_them(tmp_path: Path, flip_x: bool) -> None:
    data = _volume(tmp_path / "ct.nii.gz", flip_x=flip_x)
    ras = data[::-1] if flip_x else data  # LAS voxels are flipped along x to reach RAS
    for k in range(4):
        image = read_image(f"{tmp_path / 'ct.nii.gz'}#{k}")
        # rows anterior -> posterior (y reversed), columns right -> left (x reversed)
        np.testing.assert_allclose(image.pixels, ras[::-1, ::-1, k].T)
        assert image.spacing == pytest.approx((0.9, 0.7))
    with pytest.raises(DataError, match="4 axial slices"):
        read_image(f"{tmp_path / 'ct.nii.gz'}#4")
    with pytest.raises(DataError, match="is a volume, not an image"):
        read_image(tmp_path / "ct.nii.gz")


def test_manifest_volumes_become_slices_of_one_subject(tmp_path: Path) -> None:
    for k in range(4):
        _volume(tmp_path / f"v{k}.nii.gz", shape=(6, 5, 3 + k))
    rows = "\n".join(f"case{k},v{k}.nii.gz,{k % 2}" for k in range(4))
    (tmp_path / "m.csv").write_text(f"subject_id,image,label\n{rows}\n")
    modality = ImageModality({"image_size": 8})
    records = modality.scan(tmp_path / "m.csv")
    assert len(records) == 3 + 4 + 5 + 6
    assert [r.image for r in records[:3]] == [f"{tmp_path / 'v0.nii.gz'}#{k}" for k in range(3)]
    assert {r.subject_id for r in records[:3]} == {"case0"} and records[3].label == 1
    assert records[4].extra == {"volume": str(tmp_path / "v1.nii.gz"), "slice": 1}
    train, holdout = split_holdout(records, 0.25, seed=0)
    assert not {records[i].subject_id for i in train} & {records[i].subject_id for i in holdout}
    assert modality.validate(tmp_path / "m.csv") == []
    prepared = modality.prepare(records, tmp_path / "cache")
    assert prepared.images.shape == (18, 1, 8, 8)
    assert prepared.meta(4)["format"] == "nifti-slice" and prepared.meta(4)["slice"] == 1
    items = modality.dataset(prepared, list(range(7)), "classification")
    assert {int(items[k]["subject"]) for k in range(3)} == {prepared.subject(0)}
    single = modality.scan(tmp_path / "v2.nii.gz")
    assert len(single) == 5 and {r.subject_id for r in single} == {"v2"}


def test_broken_volumes_and_missing_slices_are_named(tmp_path: Path) -> None:
    _volume(tmp_path / "ok.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    (tmp_path / "m.csv").write_text(
        "subject_id,image\na,ok.nii.gz#2\nb,ok.nii.gz#9\nc,broken.nii.gz\n"
    )
    problems = {p.path: p.message for p in ImageModality().validate(tmp_path / "m.csv")}
    assert "slice(s) [9] do not exist" in problems[str(tmp_path / "ok.nii.gz")]
    assert "cannot be read as NIfTI" in problems[str(tmp_path / "broken.nii.gz")]


@pytest.mark.integration
def test_totalsegmentator_ct_as_axial_slices(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "image3d" / "totalsegmentator" / "example_ct_sm.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    modality = ImageModality({"image_size": 64})
    records = modality.scan(path)
    assert len(records) == 30 and {r.subject_id for r in records} == {"example_ct_sm"}
    prepared = modality.prepare(records, tmp_path / "cache")
    assert prepared.images.shape == (30, 1, 64, 64)
    # 122 (R-L) x 101 (A-P) voxels of 3 mm: columns fill the width, rows are padded.
    assert prepared.pad(0)[2:] == (0, 0) and sum(prepared.pad(0)[:2]) == 64 - 53
    assert prepared.spacing(0) == pytest.approx((3.0 * 101 / 53, 3.0 * 122 / 64), rel=1e-6)
