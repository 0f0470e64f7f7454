"""Per-image intensity normalisation of radiographs: percentile clip, min-max, z-score, none.

Every mode works on a stack (N, H, W) at once, each image with its own statistics; a
constant image maps to zeros.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

IntensityMode = Literal["percentile", "minmax", "zscore", "none"]
INTENSITY_MODES: tuple[str, ...] = ("percentile", "minmax", "zscore", "none")
#: 8-bit codes of a MedMNIST-style npz are already windowed by their publisher.
UINT8_SCALE = np.float32(1.0 / 255.0)


def normalise_images(
    images: np.ndarray,
    mode: str,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """`mode` applied to each image of a (N, H, W) stack, as float32.

    percentile: clip to the image's own `percentiles`, scale to [0, 1]; minmax: the image's
    minimum to 0 and maximum to 1; zscore: zero mean, unit standard deviation; none: as read.

    Example:
        >>> x = np.array([[[0.0, 5.0], [10.0, 20.0]]])
        >>> normalise_images(x, "minmax").tolist()
        [[[0.0, 0.25], [0.5, 1.0]]]
    """
    if mode not in INTENSITY_MODES:
        raise ValueError(f"intensity mode {mode!r} is not one of {INTENSITY_MODES}")
    if images.ndim != 3:
        raise ValueError(f"expected a stack of images (N, H, W); got shape {images.shape}")
    values = images.astype(np.float32, copy=False)
    if mode == "none" or values.shape[0] == 0:
        return values
    if mode == "zscore":
        mean = values.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
        std = values.std(axis=(1, 2), keepdims=True, dtype=np.float64)
        std[std == 0] = 1.0  # a constant image becomes zeros
        return ((values - mean) / std).astype(np.float32)
    if mode == "percentile":
        lower, upper = percentiles
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"percentiles need 0 <= lower < upper <= 100; got {percentiles}")
        flat = values.reshape(values.shape[0], -1)
        lo, hi = np.percentile(flat, [lower, upper], axis=1)
    else:
        lo = values.min(axis=(1, 2))
        hi = values.max(axis=(1, 2))
    lo = np.asarray(lo, dtype=np.float32)[:, None, None]
    hi = np.asarray(hi, dtype=np.float32)[:, None, None]
    span = hi - lo
    scale = np.where(span > 0, 1.0 / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    return ((np.clip(values, lo, hi) - lo) * scale).astype(np.float32)
