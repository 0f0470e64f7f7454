"""Readers that turn one radiograph on disk (PNG, JPEG, DICOM, an item of a MedMNIST-style
npz) into a `Radiograph`: grey pixels as float32, as displayed (bright = dense).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.image.slices import VOLUME_SUFFIXES, read_axial_slices, split_slice_ref
from medssl.modalities.npz import NPZ_ARRAYS, npz_layout, npz_locate, split_npz_ref
from medssl.platform.errors import DataError, error_summary

PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = PNG_SUFFIXES + JPEG_SUFFIXES + DICOM_SUFFIXES
#: ITU-R BT.601 luma weights of R, G, B (what Pillow's "L" conversion uses).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Pillow modes whose pixels are one grey value each.
_GREY_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
log = logging.getLogger(__name__)


@dataclass
class Radiograph:
    """One 2-D image as read.

    pixels: float32 (rows, columns), grey, oriented and inverted as the image is displayed.
    spacing: mm between rows and between columns, when the file says (DICOM), else None.
    meta: what describes the pixels (format, source dtype, DICOM modality, photometric
        interpretation, VOI applied, `converted` when colour was collapsed to grey); never a
        patient or study identifier.

    Example:
        >>> Radiograph(np.zeros((4, 6), np.float32), None, {"format": "png"}).shape
        (4, 6)
    """

    pixels: np.ndarray
    spacing: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))


def image_suffix(path: str | Path) -> str:
    """The lower-cased suffix of a path ('.nii.gz' counts as one suffix)."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) or (..., 4) colour (alpha dropped) -> (...) float32 luma; grey passes through.

    Example:
        >>> to_grey(np.array([[[255, 255, 255, 0]]], np.uint8)).round(3).tolist()
        [[255.0]]
    """
    if pixels.ndim >= 3 and pixels.shape[-1] in (3, 4):
        return (pixels[..., :3].astype(np.float32) @ LUMA).astype(np.float32)
    return pixels.astype(np.float32, copy=False)


def read_image(path: str | Path, *, apply_voi: bool = True) -> Radiograph:
    """Read a PNG, JPEG, DICOM file, an `<file.npz>#<index>` item or a `<volume.nii.gz>#<k>`
    axial slice. Raises DataError naming the file when it cannot be read. `apply_voi`: apply
    a DICOM file's VOI LUT or window."""
    ref = str(path)
    npz = split_npz_ref(ref)
    if npz is not None:
        return read_npz_item(*npz)
    axial = split_slice_ref(ref)
    if axial is not None:
        return read_volume_slice(*axial)
    p = Path(ref)
    if not p.is_file():
        raise DataError(f"{ref} does not exist; check the path in the manifest or folder")
    if image_suffix(p) in VOLUME_SUFFIXES:
        raise DataError(
            f"{ref} is a volume, not an image; give `{ref}#<k>` for its k-th axial slice "
            "(a manifest or data.path naming the volume lists them all)"
        )
    from medssl.modalities.image import dicom  # local: keeps pydicom off PNG-only datasets

    suffix = image_suffix(p)
    if suffix in PNG_SUFFIXES + JPEG_SUFFIXES:
        return read_pillow(p)
    if suffix in DICOM_SUFFIXES or dicom.has_dicom_preamble(p):
        return dicom.read_dicom_image(p, apply_voi=apply_voi)
    raise DataError(f"{ref} is not a PNG, JPEG, DICOM or npz item; remove it or convert it")


def read_pillow(path: str | Path) -> Radiograph:
    """PNG or JPEG through Pillow: 1-, 8- and 16-bit grey as stored; colour (RGB, RGBA,
    palette, CMYK) collapsed to BT.601 luma, marked in `meta["converted"]`."""
    from PIL import Image, ImageOps

    kind = "JPEG" if image_suffix(path) in JPEG_SUFFIXES else "PNG"
    try:
        with Image.open(path) as opened:
            opened.load()  # decodes every byte now, so a truncated file fails here
            image = ImageOps.exif_transpose(opened)
            mode = image.mode
            if mode in _GREY_MODES:
                pixels = np.asarray(image)
            elif mode in ("LA", "La"):
                pixels = np.asarray(image.getchannel(0))
            else:
                pixels = np.asarray(image.convert("RGB"))
    except Exception as err:  # noqa: BLE001 - every decoder failure means the same to a user
        raise DataError(f"{path} cannot be read as {kind} ({error_summary(err)})") from err
    converted = None if mode in _GREY_MODES else f"{mode} to grey"
    meta = {
        "format": kind.lower(),
        "dtype": str(pixels.dtype),
        "mode": mode,
        "converted": converted,
    }
    return Radiograph(to_grey(pixels), None, meta)


def npz_image_problem(shape: tuple[int, ...], name: str) -> str | None:
    """Why an npz image array of `shape` is not a stack of 2-D images, or None."""
    if len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3, 4)):
        return None
    return (
        f"{name} has shape {shape}; expected (N, H, W) or (N, H, W, 3) images "
        "(3-D volumes are read with data.modality=volume)"
    )


def npz_images(path: str | Path, split: str) -> np.ndarray:
    """The `<split>_images` array of an npz as (N, H, W), colour collapsed to grey (float32
    then; grey arrays keep their dtype)."""
    arrays = NPZ_ARRAYS.get(path)
    images = arrays[f"{split}_images"]
    problem = npz_image_problem(tuple(images.shape), f"{split}_images")
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    if images.ndim == 4:
        images = images[..., 0] if images.shape[-1] == 1 else to_grey(images)
    return images


def read_npz_item(path: str | Path, index: int) -> Radiograph:
    """Item `index` of a MedMNIST-style npz (items counted through train, val, test)."""
    arrays = NPZ_ARRAYS.get(path)
    split, local = npz_locate(npz_layout(arrays, path), index, path)
    raw = arrays[f"{split}_images"]
    problem = npz_image_problem(tuple(raw.shape), f"{split}_images")
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    item = raw[local]
    pixels = item[..., 0] if raw.ndim == 4 and raw.shape[-1] == 1 else to_grey(item)
    meta = {
        "format": "npz",
        "dtype": str(raw.dtype),
        "split": split,
        "converted": "RGB to grey" if raw.ndim == 4 and raw.shape[-1] >= 3 else None,
    }
    return Radiograph(np.asarray(pixels, dtype=np.float32), None, meta)


def read_volume_slice(path: str | Path, index: int) -> Radiograph:
    """Axial slice `index` (inferior to superior) of a NIfTI volume, as a reader views it."""
    slices, spacing = read_axial_slices(path)
    if not 0 <= index < len(slices):
        raise DataError(f"{path} has {len(slices)} axial slices; slice #{index} does not exist")
    meta = {"format": "nifti-slice", "dtype": "float32", "slice": index, "converted": None}
    return Radiograph(np.ascontiguousarray(slices[index]), spacing, meta)
