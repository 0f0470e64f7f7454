"""Voxel-grid geometry: canonical orientation, resampling to a spacing, and the check that a
mask lies on its image's grid. Every operation keeps world coordinates where they were.
"""

from __future__ import annotations

import numpy as np

from medssl.modalities.volume.volume import Volume

_AXIS_PAIRS = ({"L", "R"}, {"A", "P"}, {"S", "I"})


def check_axis_codes(codes: str) -> str:
    """Upper-cased axis codes such as 'RAS' or 'LPS'; ValueError when they are not one letter
    from each of L/R, A/P, S/I."""
    upper = str(codes).upper()
    used = [next((i for i, pair in enumerate(_AXIS_PAIRS) if c in pair), None) for c in upper]
    if len(upper) != 3 or None in used or sorted(used) != [0, 1, 2]:  # type: ignore[type-var]
        raise ValueError(
            f"orientation {codes!r} must be three letters, one of each pair L/R, A/P, S/I "
            "(e.g. 'RAS' or 'LPS')"
        )
    return upper


def axis_codes(affine: np.ndarray) -> str:
    """The closest axis codes of an affine ('RAS', 'LPS', ...)."""
    import nibabel.orientations as nio

    return "".join(nio.aff2axcodes(affine))


def reorient(volume: Volume, codes: str = "RAS") -> Volume:
    """Flip and permute the voxel axes so they run along `codes` (nearest axes for an
    oblique affine). A pure relabelling: no value is interpolated, the affine follows."""
    import nibabel.orientations as nio

    codes = check_axis_codes(codes)
    spatial = volume.spatial_shape
    current = nio.io_orientation(volume.affine)
    transform = nio.ornt_transform(current, nio.axcodes2ornt(tuple(codes)))
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return volume
    # apply_orientation works on the leading axes, so channels go last for the call.
    data = np.moveaxis(volume.channels_first, 0, -1)
    data = np.ascontiguousarray(np.moveaxis(nio.apply_orientation(data, transform), -1, 0))
    if volume.array.ndim == 3:
        data = data[0]
    affine = volume.affine @ nio.inv_ornt_aff(transform, spatial)
    return Volume(data, affine, dict(volume.meta))


def resample(volume: Volume, spacing: tuple[float, float, float], is_mask: bool = False) -> Volume:
    """Resample onto a grid with exactly `spacing` mm along each voxel axis, centred on the
    old grid (trilinear for images, nearest neighbour for masks).

    Output voxel i samples input coordinate c_in + (i - c_out) * f with f = new / old spacing
    and c the grid centres, so the new affine is the old one times that index map.
    """
    target = np.asarray(spacing, dtype=np.float64)
    if target.shape != (3,) or np.any(target <= 0):
        raise ValueError(f"spacing must be three positive numbers (mm); got {spacing!r}")
    old = np.asarray(volume.spacing)
    factor = target / old
    if np.allclose(factor, 1.0, rtol=1e-6, atol=0):
        return volume
    import scipy.ndimage as ndi

    in_shape = np.asarray(volume.spatial_shape, dtype=np.float64)
    out_shape = np.maximum(1, np.round(in_shape / factor)).astype(int)
    offset = (in_shape - 1) / 2 - (out_shape - 1) / 2 * factor
    order = 0 if is_mask else 1
    channels = [
        ndi.affine_transform(
            c, factor, offset=offset, output_shape=tuple(out_shape), order=order, mode="nearest"
        )
        for c in volume.channels_first
    ]
    data = np.stack(channels).astype(np.float32, copy=False)
    if volume.array.ndim == 3:
        data = data[0]
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(factor)
    index_map[:3, 3] = offset
    return Volume(np.ascontiguousarray(data), volume.affine @ index_map, dict(volume.meta))


def canonical_grid(
    affine: np.ndarray, shape: tuple[int, ...], codes: str = "RAS"
) -> tuple[np.ndarray, tuple[int, ...]]:
    """The (affine, spatial shape) that `reorient` would give, without touching voxels."""
    import nibabel.orientations as nio

    transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(tuple(codes)))
    new_shape = [0, 0, 0]
    for axis, (target, _) in enumerate(transform):
        new_shape[int(target)] = int(shape[axis])
    return affine @ nio.inv_ornt_aff(transform, shape), tuple(new_shape)


def geometry_mismatch(
    image: Volume, mask: Volume, direction_tol: float = 1e-3, origin_tol_mm: float = 1e-2
) -> str | None:
    """None when `mask` covers `image`'s voxel grid, else a short sentence saying what differs.

    Grids are compared after canonical reorientation, so a mask stored with flipped or
    permuted axes (as converters often write them) still matches: preprocessing reorients
    both. Tolerances: `direction_tol` per affine entry, `origin_tol_mm` for the origin.
    """
    a, a_shape = canonical_grid(image.affine, image.spatial_shape)
    b, b_shape = canonical_grid(mask.affine, mask.spatial_shape)
    if a_shape != b_shape:
        return f"mask shape {mask.spatial_shape} differs from image shape {image.spatial_shape}"
    direction = float(np.max(np.abs(a[:3, :3] - b[:3, :3])))
    origin = float(np.max(np.abs(a[:3, 3] - b[:3, 3])))
    if direction > direction_tol or origin > origin_tol_mm:
        return (
            f"mask affine differs from the image affine (origin by up to {origin:.3g} mm, "
            f"spacing/direction entries by up to {direction:.3g})"
        )
    return None


def world_coordinates(affine: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """World (mm) coordinates of (N, 3) voxel indices."""
    voxels = np.asarray(voxels, dtype=np.float64)
    return voxels @ affine[:3, :3].T + affine[:3, 3]
