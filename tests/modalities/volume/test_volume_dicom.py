"""DICOM series: ordering by position, rescale, LPS -> RAS affine, missing and uneven slices,
several series in one folder, and that no patient identifier survives into the metadata."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.volume.dicom import spacing_problems
from medssl.modalities.volume.readers import read_volume
from medssl.modalities.volume.validate import validate_dataset


def _reference_world(iop, ipp, spacing, i, j) -> np.ndarray:
    """RAS world of column i, row j of a slice, from the DICOM definition, in float64."""
    row_dir, col_dir = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    lps = np.asarray(ipp, float) + i * spacing[1] * row_dir + j * spacing[0] * col_dir
    return lps * np.array([-1.0, -1.0, 1.0])


def test_series_is_ordered_by_position_not_name(
    tmp_path: Path, ct_series_writer: Callable, hu_volume: Callable
) -> None:
    hu = hu_volume((6, 5, 7))
    # File names sort in the opposite order of the slice positions.
    names = [f"z{9 - k}.dcm" for k in range(7)]
    ct_series_writer(tmp_path / "s", hu, names=names)
    vol = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(vol.array, hu)
    # Shuffle names once more: the result must not change.
    order = np.random.default_rng(3).permutation(7)
    ct_series_writer(tmp_path / "t", hu, names=[f"{int(o):02d}.dcm" for o in order])
    np.testing.assert_array_equal(read_volume(tmp_path / "t").array, hu)


def test_rescale_and_affine_match_the_dicom_definition(
    tmp_path: Path, ct_series_writer: Callable, hu_volume: Callable
) -> None:
    hu = hu_volume((5, 4, 6)).round(-1)  # multiples of 10 survive slope 2 exactly
    c, s = np.cos(0.3), np.sin(0.3)
    iop = (c, s, 0.0, -s * 0.8, c * 0.8, 0.6)
    iop = tuple(iop[:3]) + tuple(np.asarray(iop[3:]) / np.linalg.norm(iop[3:]))
    normal = np.cross(iop[:3], iop[3:])
    positions = [list(np.array([5.0, -7.0, 11.0]) + 3.0 * k * normal) for k in range(6)]
    spacing = (0.9, 0.6)
    rng = np.random.default_rng(0)
    order = rng.permutation(6)
    ct_series_writer(
        tmp_path / "s",
        hu[:, :, order],
        spacing=spacing,
        orientation=iop,
        positions=[positions[o] for o in order],
        slope=2.0,
        intercept=-1000.0,
    )
    vol = read_volume(tmp_path / "s")
    np.testing.assert_allclose(vol.array, hu, atol=1e-3)
    assert vol.spacing == pytest.approx((0.6, 0.9, 3.0), abs=1e-5)
    for i, j, k in [(0, 0, 0), (4, 3, 5), (2, 1, 3)]:
        expected = _reference_world(iop, positions[k], spacing, i, j)
        got = vol.affine[:3, :3] @ np.array([i, j, k], float) + vol.affine[:3, 3]
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_missing_middle_slice_is_reported(
    tmp_path: Path, ct_series_writer: Callable, hu_volume: Callable
) -> None:
    files = ct_series_writer(tmp_path / "s", hu_volume((4, 4, 8)))
    files[4].unlink()
    vol = read_volume(tmp_path / "s")
    assert vol.array.shape[2] == 7
    problems = validate_dataset(tmp_path / "s")
    assert any("missing slice" in p.message and p.path == str(tmp_path / "s") for p in problems)


def test_uneven_spacing_is_reported(
    tmp_path: Path, ct_series_writer: Callable, hu_volume: Callable
) -> None:
    steps = [0, 2.5, 5.0, 7.7, 10.0, 12.5]
    ct_series_writer(tmp_path / "s", hu_volume((4, 4, 6)), positions=[[0, 0, z] for z in steps])
    messages = [p.message for p in validate_dataset(tmp_path / "s")]
    assert any("uneven slice spacing" in m for m in messages)
    assert not any("missing" in m for m in messages)


def test_spacing_problems_reference() -> None:
    assert spacing_problems(np.full(10, 2.0)) == []
    assert spacing_problems(np.array([2.0, 2.0, 2.0 * 1.009])) == []
    assert "uneven" in spacing_problems(np.array([2.0, 2.0, 2.05]))[0]
    gap = spacing_problems(np.array([2.0, 6.0, 2.0, 2.0]))
    assert len(gap) == 1 and "missing" in gap[0] and "2 slice" in gap[0]


def test_largest_series_wins_and_the_other_is_reported(
    tmp_path: Path, ct_series_writer: Callable, hu_volume: Callable
) -> None:
    big = hu_volume((4, 4, 5), seed=1)
    ct_series_writer(tmp_path / "s", big, series_uid="1.2.3.4")
    ct_series_writer(
        tmp_path / "s",
        hu_volume((4, 4, 2), seed=2),
        series_uid="1.2.3.5",
        names=["other_a.dcm", "other_b.dcm"],
    )
    vol = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(vol.array, big)
    assert any("2 series in one folder" in p.message for p in validate_dataset(tmp_path / "s"))


def test_no_patient_identifier_in_metadata(
    tmp_path: Path, ct_series_writer: Callable, hu_volume: Callable, patient_identity
) -> None:
    ct_series_writer(tmp_path / "s", hu_volume((4, 4, 3)))
    meta = read_volume(tmp_path / "s").meta
    text = repr(meta) + json.dumps(meta)
    name, pid = patient_identity
    for secret in (name, pid, "Doe", "Jane", "19700101"):
        assert secret not in text


@pytest.mark.integration
def test_real_ct_series(shared_data: Path) -> None:
    import pydicom

    folder = shared_data / "image3d" / "totalsegmentator" / "example_ct_dicom"
    vol = read_volume(folder)
    assert vol.array.shape == (512, 512, 20)
    headers = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    z = sorted(float(h.ImagePositionPatient[2]) for h in headers)
    assert vol.meta["slice_positions"] == pytest.approx(z)
    assert vol.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))
    lowest = min(headers, key=lambda h: float(h.ImagePositionPatient[2]))
    expected = lowest.pixel_array.T * float(lowest.RescaleSlope) + float(lowest.RescaleIntercept)
    np.testing.assert_array_equal(vol.array[:, :, 0], expected)
    assert vol.array.min() == pytest.approx(-1024.0)
    assert vol.meta["problems"] == []


@pytest.mark.integration
def test_real_monai_series_and_privacy(shared_data: Path) -> None:
    import pydicom

    folder = shared_data / "image3d" / "monai" / "CT_DICOM"
    vol = read_volume(folder)
    assert vol.array.shape == (16, 16, 4)
    assert vol.meta["slice_positions"] == pytest.approx([-99.48, 103.02, 104.27, 105.52])
    # The first slice sits 200 mm from the others: reported, not hidden.
    assert any("missing slice" in p for p in vol.meta["problems"])
    header = pydicom.dcmread(next(folder.iterdir()))
    text = repr(vol.meta) + json.dumps(vol.meta)
    for secret in (str(header.PatientName), str(header.PatientID)):
        assert secret and secret not in text
