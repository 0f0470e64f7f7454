"""DICOM radiographs: one frame, displayed as a reader sees it (Modality LUT or rescale,
then the VOI LUT or window, MONOCHROME1 inverted), with every identifying tag left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.image.readers import Radiograph, to_grey
from medssl.modalities.volume.dicom import has_dicom_preamble
from medssl.platform.errors import DataError, error_summary

__all__ = ["has_dicom_preamble", "read_dicom_image"]


def read_dicom_image(path: str | Path, *, apply_voi: bool = True) -> Radiograph:
    """One single-frame DICOM image as displayed: RescaleSlope/Intercept (or a Modality LUT),
    then, with `apply_voi`, the VOI LUT or Window Center/Width when present, then
    MONOCHROME1 inverted within the output range, so that bright is dense. Colour images are
    collapsed to grey. `spacing` is PixelSpacing (else ImagerPixelSpacing) in mm.
    Raises DataError for unreadable, pixel-less and multi-frame files."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as err:  # noqa: BLE001 - pydicom raises many classes for one meaning
        raise DataError(f"{path} cannot be read as DICOM ({error_summary(err)})") from err
    if "PixelData" not in ds:
        raise DataError(f"{path} is a DICOM file without pixel data; remove it from the dataset")
    frames = _int(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise DataError(
            f"{path} is a multi-frame DICOM ({frames} frames), but a radiograph is one image; "
            "export the frame you want, or read the file as a volume (data.modality=volume)"
        )
    try:
        stored = np.asarray(ds.pixel_array)
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: its pixel data cannot be decoded ({error_summary(err)})") from err
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    meta: dict[str, Any] = {
        "format": "dicom",
        "dtype": str(stored.dtype),
        "modality": str(ds.get("Modality", "") or ""),
        "photometric": photometric,
        "bits_stored": _int(ds, "BitsStored", 8 * stored.dtype.itemsize),
        "voi": None,
        "converted": None,
    }
    if stored.ndim == 3 or photometric == "PALETTE COLOR":
        pixels = _colour_to_grey(stored, ds, photometric, path)
        meta["converted"] = f"{photometric} to grey"
    elif stored.ndim == 2:
        pixels, meta["voi"] = _displayed(stored, ds, photometric, apply_voi, path)
    else:
        raise DataError(f"{path} has pixel data of shape {stored.shape}; expected one image")
    slope, intercept = _float(ds, "RescaleSlope"), _float(ds, "RescaleIntercept")
    meta["rescale"] = [1.0 if slope is None else slope, 0.0 if intercept is None else intercept]
    return Radiograph(np.ascontiguousarray(pixels, dtype=np.float32), _spacing(ds), meta)


def _displayed(
    stored: np.ndarray, ds: Any, photometric: str, apply_voi: bool, path: str | Path
) -> tuple[np.ndarray, str | None]:
    """Stored values -> modality values -> VOI output -> MONOCHROME1 inversion."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        values = np.asarray(apply_modality_lut(stored, ds))
        lo, hi = _modality_range(ds)
        voi = _voi_kind(ds) if apply_voi and photometric.startswith("MONOCHROME") else None
        if voi == "lut" and values.dtype.kind == "f" and np.all(values == np.round(values)):
            values = values.astype(np.int64)  # a LUT is indexed by whole modality values
        if voi is not None:
            values = np.asarray(apply_voi_lut(values, ds, prefer_lut=True))
            lo, hi = _voi_range(ds, voi, (lo, hi))
        values = values.astype(np.float64)
    except Exception as err:  # noqa: BLE001 - malformed LUTs or windows in the header
        raise DataError(
            f"{path}: its rescale, LUT or window tags cannot be applied ({error_summary(err)})"
        ) from err
    if photometric == "MONOCHROME1":
        # Minimum is white in MONOCHROME1: mirror inside the output range so bright is dense.
        values = lo + hi - values
    return values.astype(np.float32), voi


def _colour_to_grey(stored: np.ndarray, ds: Any, photometric: str, path: str | Path) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            stored = np.asarray(apply_color_lut(stored, ds))
        except Exception as err:  # noqa: BLE001
            raise DataError(
                f"{path}: its palette cannot be applied ({error_summary(err)})"
            ) from err
    if stored.ndim != 3 or stored.shape[-1] not in (3, 4):
        raise DataError(f"{path} has colour pixel data of shape {stored.shape}; expected one image")
    return to_grey(stored)


def _voi_kind(ds: Any) -> str | None:
    """The VOI step a file asks for: "lut" for a usable VOI LUT Sequence (it wins, as
    pydicom prefers it), "window" for Window Center/Width, else None."""
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        return "lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return "window"
    return None


def _stored_range(ds: Any) -> tuple[float, float]:
    bits = _int(ds, "BitsStored", 16)
    if _int(ds, "PixelRepresentation", 0) == 0:
        return 0.0, float(2**bits - 1)
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)


def _modality_range(ds: Any) -> tuple[float, float]:
    """The range the Modality LUT (or rescale) maps the stored range to."""
    seq = ds.get("ModalityLUTSequence")
    if seq:
        return 0.0, float(2 ** int(seq[0].LUTDescriptor[2]) - 1)
    lo, hi = _stored_range(ds)
    slope, intercept = _float(ds, "RescaleSlope"), _float(ds, "RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return lo, hi


def _voi_range(ds: Any, voi: str, modality: tuple[float, float]) -> tuple[float, float]:
    """The output range of the VOI step: the LUT's entries, or for a window the modality
    range (pydicom maps a window onto it)."""
    if voi == "lut":
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    return modality


def _spacing(ds: Any) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            rows, cols = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        if rows > 0 and cols > 0:
            return rows, cols
    return None


def _int(ds: Any, keyword: str, default: int) -> int:
    try:
        return int(ds.get(keyword, default) or default)
    except (TypeError, ValueError):
        return default


def _float(ds: Any, keyword: str) -> float | None:
    value = ds.get(keyword)
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
