"""Intensity normalisation of scans: a Hounsfield window, percentile clipping, min-max, none.

Each mode maps a float array to float32, channel by channel; constant inputs map to zeros.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

IntensityMode = Literal["hu_window", "percentile", "minmax", "none"]
INTENSITY_MODES: tuple[str, ...] = ("hu_window", "percentile", "minmax", "none")
UINT8_SCALE = 1.0 / 255.0


def scale_to_unit(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip to [lo, hi] then map linearly to [0, 1]; zeros when hi == lo."""
    out = np.clip(array.astype(np.float32, copy=False), lo, hi)
    if hi <= lo:
        return np.zeros_like(out, dtype=np.float32)
    return ((out - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32, copy=False)


def hu_window(array: np.ndarray, lo: float = -1000.0, hi: float = 1000.0) -> np.ndarray:
    """CT window: HU below `lo` become 0, above `hi` become 1, linear between."""
    if hi <= lo:
        raise ValueError(f"hu_window needs lo < hi; got ({lo}, {hi})")
    return scale_to_unit(array, lo, hi)


def percentile_window(array: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Clip to the volume's own `lower`/`upper` percentiles, then scale to [0, 1] (MRI, or CT
    of unknown calibration)."""
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"percentiles need 0 <= lower < upper <= 100; got ({lower}, {upper})")
    lo, hi = np.percentile(array, [lower, upper])
    return scale_to_unit(array, float(lo), float(hi))


def minmax(array: np.ndarray) -> np.ndarray:
    """Scale the volume's own minimum to 0 and maximum to 1."""
    return scale_to_unit(array, float(np.min(array)), float(np.max(array)))


def normalise(
    array: np.ndarray,
    mode: str,
    window: tuple[float, float] = (-1000.0, 1000.0),
    percentiles: tuple[float, float] = (0.5, 99.5),
    source_dtype: str | None = None,
) -> np.ndarray:
    """Apply `mode` to each channel of a (C, X, Y, Z) or (X, Y, Z) array.

    `source_dtype == "uint8"` marks data already windowed by its publisher (MedMNIST): it is
    divided by 255 whatever the mode, since a window or percentile of 8-bit codes means nothing.
    """
    if mode not in INTENSITY_MODES:
        raise ValueError(f"intensity mode {mode!r} is not one of {INTENSITY_MODES}")
    if source_dtype == "uint8":
        return (array.astype(np.float32, copy=False) * np.float32(UINT8_SCALE)).astype(np.float32)
    if array.ndim == 4:
        return np.stack([normalise(c, mode, window, percentiles) for c in array])
    if mode == "hu_window":
        return hu_window(array, *window)
    if mode == "percentile":
        return percentile_window(array, *percentiles)
    if mode == "minmax":
        return minmax(array)
    return array.astype(np.float32, copy=False)
