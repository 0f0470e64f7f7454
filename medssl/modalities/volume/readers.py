"""Readers that turn one scan on disk (NIfTI, NRRD, DICOM, npz item) into a `Volume`.

Every reader returns voxels as float32 with a voxel -> RAS+ world (mm) affine; nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.npz import (
    NPZ_ARRAYS,
    npz_layout,
    npz_locate,
    split_npz_ref,
)
from medssl.modalities.volume.volume import Volume
from medssl.platform.errors import DataError, error_summary

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")

# NRRD world spaces and the sign flips that take them to RAS.
_NRRD_SPACE_FLIPS = {
    "right-anterior-superior": (1, 1, 1),
    "ras": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "las": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1),
    "lps": (-1, -1, 1),
    "scanner-xyz": (1, 1, 1),
    "3d-right-handed": (1, 1, 1),
}


def file_suffix(path: str | Path) -> str:
    """The lower-cased medical suffix of a path ('.nii.gz' counts as one suffix)."""
    name = Path(path).name.lower()
    for suffix in NIFTI_SUFFIXES + NRRD_SUFFIXES + DICOM_SUFFIXES + (".npz",):
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def file_stem(path: str | Path) -> str:
    """The file name without its medical suffix ('ct.nii.gz' -> 'ct')."""
    name = Path(path).name
    suffix = file_suffix(path)
    return name[: len(name) - len(suffix)] if suffix and name.lower().endswith(suffix) else name


def read_volume(path: str | Path) -> Volume:
    """Read any supported scan: a NIfTI/NRRD/DICOM file, a DICOM series folder, or
    `<file.npz>#<index>`. Raises DataError naming the file when it cannot be read."""
    ref = str(path)
    npz = split_npz_ref(ref)
    if npz is not None:
        return read_npz_item(*npz)
    p = Path(ref)
    if not p.exists():
        raise DataError(f"{ref} does not exist; check the path in the manifest or folder")
    from medssl.modalities.volume import dicom  # local: keeps pydicom off plain NIfTI paths

    if p.is_dir():
        return dicom.read_dicom_series(p)
    suffix = file_suffix(p)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti(p)
    if suffix in NRRD_SUFFIXES:
        return read_nrrd(p)
    if suffix in DICOM_SUFFIXES or dicom.has_dicom_preamble(p):
        return dicom.read_dicom_file(p)
    raise DataError(
        f"{ref} is not a NIfTI (.nii, .nii.gz), NRRD, DICOM or npz file; remove it or convert it"
    )


def read_nifti(path: str | Path) -> Volume:
    """NIfTI-1/2 through nibabel; the best affine (sform, else qform) is already RAS+."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
        # get_fdata decompresses and scales every voxel, so a truncated file fails here.
        data = np.asarray(image.get_fdata(dtype=np.float32))
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as err:  # noqa: BLE001 - any decoder failure means the same to a user
        raise DataError(f"{path} cannot be read as NIfTI ({error_summary(err)})") from err
    data = _to_channels_last_3d(data, path)
    meta = {"format": "nifti", "source": str(path), "dtype": str(image.get_data_dtype())}
    return Volume(_channels_first(data), affine, meta)


def read_nrrd(path: str | Path) -> Volume:
    """NRRD through pynrrd; `space directions`/`space origin` are mapped to RAS+."""
    import nrrd

    try:
        data, header = nrrd.read(str(path), index_order="F")
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path} cannot be read as NRRD ({error_summary(err)})") from err
    data = np.asarray(data)
    dtype = str(data.dtype)
    directions = header.get("space directions")
    spatial_axes = list(range(data.ndim))
    if directions is not None:
        rows = [np.asarray(d, dtype=np.float64) if d is not None else None for d in directions]
        spatial_axes = [i for i, d in enumerate(rows) if d is not None and np.all(np.isfinite(d))]
    if len(spatial_axes) not in (2, 3) or data.ndim - len(spatial_axes) > 1:
        raise DataError(
            f"{path} has {data.ndim} axes of which {len(spatial_axes)} spatial; "
            "only 2D/3D NRRD images with at most one channel axis are supported"
        )
    channel_axes = [i for i in range(data.ndim) if i not in spatial_axes]
    data = np.moveaxis(data, spatial_axes + channel_axes, list(range(data.ndim)))
    affine = np.eye(4)
    if directions is not None:
        n_world = len(rows[spatial_axes[0]])  # type: ignore[arg-type]
        for col, axis in enumerate(spatial_axes):
            affine[:n_world, col] = rows[axis]  # type: ignore[index]
        origin = header.get("space origin")
        if origin is not None:
            affine[: len(origin), 3] = np.asarray(origin, dtype=np.float64)
    elif "spacings" in header:
        affine[:3, :3] = np.diag([float(s) for s in header["spacings"]][:3])
    space = str(header.get("space", "right-anterior-superior")).lower()
    if space not in _NRRD_SPACE_FLIPS:
        raise DataError(f"{path} uses NRRD space '{space}', which cannot be mapped to RAS")
    affine = np.diag(list(_NRRD_SPACE_FLIPS[space]) + [1]) @ affine
    data = _to_channels_last_3d(data.astype(np.float32, copy=False), path)
    meta = {"format": "nrrd", "source": str(path), "dtype": dtype}
    return Volume(_channels_first(data), affine, meta)


def read_npz_item(path: str | Path, index: int) -> Volume:
    """Item `index` of a MedMNIST-style npz: 1 mm isotropic, identity affine, raw values."""
    arrays = NPZ_ARRAYS.get(path)
    split, local = npz_locate(npz_layout(arrays, path), index, path)
    images = arrays[f"{split}_images"]
    if images.ndim not in (4, 5):
        raise DataError(
            f"{path}: {split}_images has shape {images.shape}; expected (N, X, Y, Z) "
            "or (N, X, Y, Z, C)"
        )
    item = np.asarray(images[local], dtype=np.float32)
    if item.ndim == 4:
        item = np.moveaxis(item, -1, 0)
    meta = {
        "format": "npz",
        "source": f"{path}#{index}",
        "dtype": str(images.dtype),
        "split": split,
    }
    return Volume(item, np.eye(4), meta)


def _to_channels_last_3d(data: np.ndarray, path: str | Path) -> np.ndarray:
    """(X, Y) -> (X, Y, 1); (X, Y, Z, 1) -> (X, Y, Z); (X, Y, Z, C) stays."""
    if data.ndim == 2:
        return data[..., None]
    if data.ndim == 4 and data.shape[3] == 1:
        return data[..., 0]
    if data.ndim == 5 and data.shape[3] == 1:  # NIfTI stores vector voxels on axis 4
        return data[:, :, :, 0, :]
    if data.ndim not in (3, 4):
        raise DataError(f"{path} has shape {data.shape}; expected a 3D volume or 3D + channels")
    return data


def _channels_first(data: np.ndarray) -> np.ndarray:
    data = data.astype(np.float32, copy=False)
    return np.ascontiguousarray(np.moveaxis(data, -1, 0) if data.ndim == 4 else data)


def stat_fingerprint(path: str | Path) -> list[Any]:
    """(resolved path, size, mtime) of a file, or of every file in a folder, for cache keys."""
    p = Path(path)
    if p.is_dir():
        return [
            [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns]
            for f in sorted(p.iterdir())
            if f.is_file() and not f.name.startswith(".")
        ]
    stat = os.stat(p)
    return [[str(p.resolve()), stat.st_size, stat.st_mtime_ns]]
