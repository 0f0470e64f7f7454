"""Geometry: reorientation keeps every voxel's world position and value; resampling matches a
slow trilinear reference; mask/image grid mismatches are found."""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medssl.modalities.volume.geometry import (
    axis_codes,
    check_axis_codes,
    geometry_mismatch,
    reorient,
    resample,
)
from medssl.modalities.volume.readers import read_volume
from medssl.modalities.volume.volume import Volume


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _affines() -> dict[str, np.ndarray]:
    lps = np.diag([-0.8, -0.9, 2.5, 1.0])
    lps[:3, 3] = [40.0, 30.0, -20.0]
    oblique = np.eye(4)
    # Permuted, flipped and rotated by ~20 degrees: nearest axes are (P, S, L) or similar.
    base = np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, 1.0, 0]]) @ np.diag([1.2, 0.7, 2.0])
    oblique[:3, :3] = _rotation(0.35, -0.2, 0.3) @ base
    oblique[:3, 3] = [-12.0, 7.5, 3.0]
    return {"lps": lps, "oblique": oblique}


@pytest.mark.parametrize("name", ["lps", "oblique"])
@pytest.mark.parametrize("codes", ["RAS", "LPS", "PIR"])
def test_reorient_round_trip_through_nifti(tmp_path: Path, name: str, codes: str) -> None:
    affine = _affines()[name]
    data = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "v.nii.gz")
    original = read_volume(tmp_path / "v.nii.gz")
    canonical = reorient(original, codes)
    assert axis_codes(canonical.affine) == codes
    inverse = np.linalg.inv(canonical.affine)
    for ijk in itertools.product((0, 2, 4), (0, 3, 5), (0, 6)):
        world = affine[:3, :3] @ np.array(ijk, float) + affine[:3, 3]
        new_ijk = inverse[:3, :3] @ world + inverse[:3, 3]
        rounded = np.round(new_ijk).astype(int)
        np.testing.assert_allclose(new_ijk, rounded, atol=1e-4)
        assert canonical.array[tuple(rounded)] == data[ijk]


def test_reorient_keeps_channels_together() -> None:
    data = np.random.default_rng(1).normal(size=(2, 3, 4, 5)).astype(np.float32)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    out = reorient(Volume(data, affine), "RAS")
    np.testing.assert_array_equal(out.array, data[:, ::-1, ::-1, :])
    np.testing.assert_allclose(out.affine[:3, 3], [-2.0, -3.0, 0.0])


def test_axis_codes_are_checked() -> None:
    assert check_axis_codes("lps") == "LPS"
    for bad in ("RAA", "XYZ", "RA", "RASL"):
        with pytest.raises(ValueError, match="orientation"):
            check_axis_codes(bad)


def _trilinear_reference(data: np.ndarray, coord: np.ndarray) -> float:
    """Interpolate at a fractional index, clamping outside the grid (float64, plain loops)."""
    shape = np.array(data.shape)
    c = np.clip(coord, 0, shape - 1)
    lo = np.floor(c).astype(int)
    total = 0.0
    for corner in itertools.product((0, 1), repeat=3):
        idx = np.minimum(lo + np.array(corner), shape - 1)
        weight = 1.0
        for axis in range(3):
            t = c[axis] - lo[axis]
            weight *= t if corner[axis] else 1.0 - t
        total += weight * float(data[tuple(idx)])
    return total


def test_resample_matches_trilinear_reference_and_keeps_world() -> None:
    rng = np.random.default_rng(2)
    data = rng.normal(size=(6, 7, 5))
    affine = np.diag([1.0, 1.5, 3.0, 1.0])
    affine[:3, 3] = [10.0, -4.0, 2.0]
    out = resample(Volume(data.astype(np.float32), affine), (0.75, 2.0, 1.25))
    assert out.spacing == pytest.approx((0.75, 2.0, 1.25))
    assert out.spatial_shape == (8, 5, 12)  # round(extent / spacing)
    inv_in = np.linalg.inv(affine)
    for ijk in itertools.product(range(0, 8, 3), range(0, 5, 2), range(0, 12, 5)):
        world = out.affine[:3, :3] @ np.array(ijk, float) + out.affine[:3, 3]
        source = inv_in[:3, :3] @ world + inv_in[:3, 3]
        assert out.array[ijk] == pytest.approx(_trilinear_reference(data, source), abs=1e-4)
    # Grid centres coincide.
    centre_in = affine[:3, :3] @ ((np.array(data.shape) - 1) / 2) + affine[:3, 3]
    centre_out = out.affine[:3, :3] @ ((np.array(out.spatial_shape) - 1) / 2) + out.affine[:3, 3]
    np.testing.assert_allclose(centre_in, centre_out, atol=1e-9)


def test_resample_mask_uses_nearest_labels() -> None:
    mask = np.zeros((8, 8, 8), np.float32)
    mask[2:6, 2:6, 2:6] = 3
    mask[0, 0, 0] = 7
    out = resample(Volume(mask, np.eye(4)), (0.7, 0.7, 1.3), is_mask=True)
    assert set(np.unique(out.array)) <= {0.0, 3.0, 7.0}
    assert (out.array == 3).sum() > 0
    with pytest.raises(ValueError, match="spacing"):
        resample(Volume(mask, np.eye(4)), (1.0, 0.0, 1.0))


def test_geometry_mismatch_names_shape_and_affine() -> None:
    image = Volume(np.zeros((4, 5, 6), np.float32), np.eye(4))
    assert geometry_mismatch(image, Volume(np.zeros((4, 5, 6), np.float32), np.eye(4))) is None
    shape_msg = geometry_mismatch(image, Volume(np.zeros((4, 5, 7), np.float32), np.eye(4)))
    assert shape_msg is not None and "(4, 5, 7)" in shape_msg and "(4, 5, 6)" in shape_msg
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    assert "origin" in geometry_mismatch(image, Volume(image.array, shifted))  # type: ignore[operator]
