"""Readers: synthetic NIfTI / NRRD / npz round trips, and every real format in the shared data."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest

from medssl.modalities.volume.geometry import geometry_mismatch, reorient
from medssl.modalities.volume.readers import file_stem, read_volume, split_npz_ref
from medssl.platform.errors import DataError


def _world(affine: np.ndarray, ijk: tuple[int, int, int]) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(ijk, dtype=np.float64) + affine[:3, 3]


def test_nifti_round_trip_keeps_values_and_affine(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    affine = np.array([[-2.0, 0, 0, 10], [0, 1.5, 0, -3], [0, 0, 3, 7], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "a.nii.gz")
    vol = read_volume(tmp_path / "a.nii.gz")
    assert vol.array.dtype == np.float32 and vol.array.shape == (4, 5, 6)
    np.testing.assert_array_equal(vol.array, data)
    np.testing.assert_allclose(vol.affine, affine)
    assert vol.spacing == pytest.approx((2.0, 1.5, 3.0))


def test_nifti_with_channels_is_channels_first(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(4, 5, 6, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "c.nii")
    vol = read_volume(tmp_path / "c.nii")
    assert vol.array.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(vol.array[1], data[..., 1])


def test_nrrd_lps_space_is_converted_to_ras(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.5, 0.7, 2.0]),
        "space origin": np.array([10.0, 20, 30]),
    }
    nrrd.write(str(tmp_path / "a.nrrd"), data, header, index_order="F")
    vol = read_volume(tmp_path / "a.nrrd")
    np.testing.assert_array_equal(vol.array, data)
    for ijk in [(0, 0, 0), (2, 3, 4), (1, 0, 3)]:
        lps = np.array([10.0, 20, 30]) + np.array(ijk) * np.array([0.5, 0.7, 2.0])
        ras = lps * np.array([-1, -1, 1])
        np.testing.assert_allclose(_world(vol.affine, ijk), ras)


def test_unknown_and_missing_files_raise_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a scan")
    with pytest.raises(DataError, match="notes.txt is not a NIfTI"):
        read_volume(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="does not exist"):
        read_volume(tmp_path / "nothing.nii.gz")


def test_file_stem_and_npz_refs() -> None:
    assert file_stem("/a/b/ct_seg.nii.gz") == "ct_seg"
    assert file_stem("brain1_image.nrrd") == "brain1_image"
    assert split_npz_ref("/x/y.npz#12") == ("/x/y.npz", 12)
    assert split_npz_ref("/x/y.nii.gz") is None


def test_npz_items_count_through_splits(tmp_path: Path) -> None:
    train = np.random.default_rng(1).integers(0, 255, (3, 4, 4, 4), dtype=np.uint8)
    val = np.random.default_rng(2).integers(0, 255, (2, 4, 4, 4), dtype=np.uint8)
    np.savez(
        tmp_path / "m.npz",
        train_images=train,
        train_labels=np.zeros((3, 1)),
        val_images=val,
        val_labels=np.ones((2, 1)),
    )
    item = read_volume(f"{tmp_path / 'm.npz'}#4")
    np.testing.assert_array_equal(item.array, val[1])
    np.testing.assert_array_equal(item.affine, np.eye(4))
    assert item.meta["split"] == "val"
    with pytest.raises(DataError, match="5 items"):
        read_volume(f"{tmp_path / 'm.npz'}#5")


# ---- real files -------------------------------------------------------------------------


@pytest.mark.integration
def test_totalsegmentator_ct_and_seg(shared_data: Path) -> None:
    root = shared_data / "image3d" / "totalsegmentator"
    ct = read_volume(root / "example_ct_sm.nii.gz")
    seg = read_volume(root / "example_seg.nii.gz")
    assert ct.array.shape == (122, 101, 30)
    assert ct.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert -1100 <= ct.array.min() <= -1000 and ct.array.max() > 500
    assert geometry_mismatch(ct, seg) is None
    labels = np.unique(seg.array)
    assert labels[0] == 0 and len(labels) > 5 and np.all(labels == np.round(labels))


@pytest.mark.integration
def test_monai_anatomical_with_label(shared_data: Path) -> None:
    root = shared_data / "image3d" / "monai"
    image = read_volume(root / "anatomical.nii")
    label = read_volume(root / "anatomical_label.nii.gz")
    assert image.array.shape == (33, 41, 25)
    assert geometry_mismatch(image, label) is None
    np.testing.assert_allclose(image.affine[:3, 3], [32.0, -40.0, -16.0])
    assert label.array.max() >= 1


@pytest.mark.integration
def test_pyradiomics_nrrd_brain(shared_data: Path) -> None:
    root = shared_data / "image3d" / "pyradiomics"
    image = read_volume(root / "brain1_image.nrrd")
    label = read_volume(root / "brain1_label.nrrd")
    assert image.array.shape == (256, 256, 25)
    assert geometry_mismatch(image, label) is None
    # header: LPS origin (-99.609375, 99.609375, -78), directions diag(0.78125, -0.78125, 6.5)
    np.testing.assert_allclose(_world(image.affine, (0, 0, 0)), [99.609375, -99.609375, -78.0])
    np.testing.assert_allclose(
        _world(image.affine, (1, 1, 1)), [99.609375 - 0.78125, -99.609375 + 0.78125, -78.0 + 6.5]
    )
    assert int((label.array > 0).sum()) > 0


@pytest.mark.integration
def test_pydicom_single_files(shared_data: Path) -> None:
    root = shared_data / "image3d" / "pydicom"
    ct = read_volume(root / "CT_small.dcm")
    assert ct.array.shape == (128, 128, 1)
    assert ct.spacing[:2] == pytest.approx((0.661468, 0.661468))
    # RescaleIntercept -1024 applied: stored values are >= 0, HU go well below zero.
    assert ct.array.min() < -800 and ct.meta["rescale_intercept"] == -1024.0
    np.testing.assert_allclose(_world(ct.affine, (0, 0, 0)), [158.135803, 179.035797, -75.699997])
    mr = read_volume(root / "MR_small.dcm")
    assert mr.array.shape == (64, 64, 1) and mr.meta["modality"] == "MR"


@pytest.mark.integration
def test_pydicom_multiframe(shared_data: Path) -> None:
    import pydicom

    path = shared_data / "image3d" / "pydicom" / "emri_small.dcm"
    vol = read_volume(path)
    frames = pydicom.dcmread(path).pixel_array
    assert vol.array.shape == (64, 64, 10)
    for k in (0, 4, 9):
        np.testing.assert_array_equal(vol.array[:, :, k], frames[k].T)
    assert vol.spacing[2] == pytest.approx(1.2)  # SpacingBetweenSlices
    assert any("assumed" in p for p in vol.meta["problems"])


@pytest.mark.integration
def test_medmnist_npz_item(shared_data: Path) -> None:
    import zipfile

    path = shared_data / "image3d" / "medmnist" / "adrenalmnist3d_64_trainsplit.npz"
    # Reference: stream the member's bytes up to item 5 (no whole-array load).
    with zipfile.ZipFile(path) as archive, archive.open("train_images.npy") as f:
        version = np.lib.format.read_magic(f)
        assert version == (1, 0)
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        f.read(5 * 64**3)
        expected = np.frombuffer(f.read(64**3), dtype=dtype).reshape(64, 64, 64)
    assert shape == (1188, 64, 64, 64) and dtype == np.uint8
    vol = read_volume(f"{path}#5")
    assert vol.array.shape == (64, 64, 64) and vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, expected)
    assert vol.spacing == (1.0, 1.0, 1.0)


@pytest.mark.integration
def test_real_dicom_series_matches_its_segmentation(shared_data: Path) -> None:
    root = shared_data / "image3d" / "totalsegmentator"
    ct = reorient(read_volume(root / "example_ct_dicom"))
    seg = reorient(read_volume(root / "example_seg_dicom.nii.gz"))
    assert geometry_mismatch(ct, seg) is None
    # Content, not just the grid: organs segmented are soft tissue, the rest is mostly air.
    inside = ct.array[seg.array > 0].mean()
    assert inside > 0 > ct.array[seg.array == 0].mean()
    flipped = ct.array[:, ::-1][seg.array > 0].mean()
    assert flipped < inside - 100
