"""Readers that turn one scan on disk (NIfTI, NRRD, DICOM, npz item) into a `Volume`.

Every reader returns voxels as float32 with a voxel -> RAS+ world (mm) affine; nothing else.
"""

from __future__ import annotations

import os
import re
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.volume.volume import Volume, error_summary
from medssl.platform.errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NPZ_SPLITS = ("train", "val", "test")
_NPZ_REF = re.compile(r"^(?P<file>.+\.npz)#(?P<index>\d+)$")

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


def split_npz_ref(ref: str) -> tuple[str, int] | None:
    """('<file>.npz', index) for an `<file.npz>#<index>` reference, else None."""
    match = _NPZ_REF.match(str(ref))
    return (match["file"], int(match["index"])) if match else None


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


class _NpzArrays:
    """The most recently opened npz, so reading item after item decompresses it once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, path: str | Path) -> dict[str, np.ndarray]:
        p = Path(path)
        try:
            stat = p.stat()
        except OSError as err:
            raise DataError(f"{path} does not exist; check the npz path") from err
        key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key != self._key:
                try:
                    with np.load(p, allow_pickle=False) as npz:
                        arrays = {k: np.asarray(npz[k]) for k in npz.files}
                except Exception as err:  # noqa: BLE001
                    raise DataError(
                        f"{path} cannot be read as an npz file ({error_summary(err)})"
                    ) from err
                self._key, self._arrays = key, arrays
            return self._arrays


NPZ_ARRAYS = _NpzArrays()


def npz_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Shape of every array in an npz, from the .npy headers only (nothing is decompressed
    beyond them)."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shapes[name[: -len(".npy")]] = tuple(read_header(f)[0])
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path} cannot be read as an npz file ({error_summary(err)})") from err
    return shapes


def npz_layout(
    arrays: Mapping[str, np.ndarray | tuple[int, ...]], path: str | Path
) -> list[tuple[str, int]]:
    """[(split, n_items)] for the `<split>_images` arrays present, in train/val/test order.
    A global item index counts through the splits in that order. `arrays` maps names to
    arrays or to their shapes."""
    layout = []
    for split in NPZ_SPLITS:
        value = arrays.get(f"{split}_images")
        if value is not None:
            layout.append((split, int(value[0] if isinstance(value, tuple) else len(value))))
    if not layout:
        raise DataError(
            f"{path} has arrays {sorted(arrays)} but none named train_images, val_images or "
            "test_images (the MedMNIST layout); rename the image array"
        )
    return layout


def npz_locate(layout: list[tuple[str, int]], index: int, path: str | Path) -> tuple[str, int]:
    """(split, position inside that split) of a global item index."""
    for split, n in layout:
        if index < n:
            return split, index
        index -= n
    total = sum(n for _, n in layout)
    raise DataError(f"{path} has {total} items; item #{index} does not exist")


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
