"""Axial slices of CT/MRI volumes (NIfTI) served as 2-D images: `<file.nii.gz>#<k>` is the
k-th axial slice, inferior to superior, shown as a radiologist reads it (rows anterior ->
posterior, columns patient right -> left). Every slice of a volume keeps its subject.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medssl.platform.errors import DataError, error_summary

VOLUME_SUFFIXES = (".nii", ".nii.gz")
_SLICE_REF = re.compile(r"^(?P<file>.+\.nii(\.gz)?)#(?P<index>\d+)$", re.IGNORECASE)


def split_slice_ref(ref: str) -> tuple[str, int] | None:
    """('<file>.nii[.gz]', slice) for a `<volume>#<k>` reference, else None.

    Example:
        >>> split_slice_ref("ct.nii.gz#12"), split_slice_ref("m.npz#3")
        (('ct.nii.gz', 12), None)
    """
    match = _SLICE_REF.match(str(ref))
    return (match["file"], int(match["index"])) if match else None


def axial_count(path: str | Path) -> int:
    """The number of axial slices of a NIfTI volume, from its header alone."""
    import nibabel as nib

    try:
        image: Any = nib.load(str(path))
        codes = nib.aff2axcodes(image.affine)
        shape = image.shape
    except Exception as err:  # noqa: BLE001 - any header failure means the same to a user
        raise DataError(f"{path} cannot be read as NIfTI ({error_summary(err)})") from err
    axis = next((k for k, c in enumerate(codes) if c in ("S", "I")), None)
    if len(shape) < 3 or axis is None:
        raise DataError(f"{path} has shape {shape}; expected a 3-D volume to cut axial slices of")
    return int(shape[axis])


def read_axial_slices(path: str | Path) -> tuple[np.ndarray, tuple[float, float]]:
    """(slices (n, rows, cols) float32 inferior to superior, (row, column) spacing in mm) of
    a single-channel NIfTI volume, reoriented to RAS first."""
    from medssl.modalities.volume.geometry import reorient
    from medssl.modalities.volume.readers import read_nifti
    from medssl.modalities.volume.slices import axial_slices

    volume = reorient(read_nifti(path), "RAS")
    array = volume.array
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise DataError(
                f"{path} has {array.shape[0]} channels; axial slices are cut from "
                "single-channel volumes"
            )
        array = array[0]
    stack, _, _ = axial_slices(array, "RAS")
    sx, sy, _ = volume.spacing
    # In the reading view rows run along A-P (the Y axis) and columns along R-L (X).
    return stack.numpy().astype(np.float32, copy=False), (sy, sx)
