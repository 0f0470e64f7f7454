"""Radiographs to one size: resized keeping their aspect ratio, then padded (centred) to the
target, with the scale and the pad recorded so that pixels can be mapped back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Fit:
    """How an image of `source` (rows, cols) was fitted into `target`: resized to `resized`
    and padded by `pad` = (top, bottom, left, right) pixels.

    Example:
        >>> fit = fit_geometry((512, 256), (224, 224))
        >>> fit.resized, fit.pad
        ((224, 112), (0, 0, 56, 56))
    """

    source: tuple[int, int]
    target: tuple[int, int]
    resized: tuple[int, int]
    pad: tuple[int, int, int, int]

    @property
    def zoom(self) -> tuple[float, float]:
        """Resized / source size along rows and columns (pixel spacing divides by it)."""
        return (self.resized[0] / self.source[0], self.resized[1] / self.source[1])


def fit_geometry(source: tuple[int, int], target: tuple[int, int]) -> Fit:
    """The largest resize of `source` that keeps its aspect ratio inside `target`, centred."""
    rows, cols = int(source[0]), int(source[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"an image needs at least one row and column; got {source}")
    scale = min(target[0] / rows, target[1] / cols)
    resized = (
        min(target[0], max(1, round(rows * scale))),
        min(target[1], max(1, round(cols * scale))),
    )
    dr, dc = target[0] - resized[0], target[1] - resized[1]
    pad = (dr // 2, dr - dr // 2, dc // 2, dc - dc // 2)
    return Fit((rows, cols), (int(target[0]), int(target[1])), resized, pad)


def fit_images(
    images: np.ndarray, target: tuple[int, int], fill: np.ndarray
) -> tuple[np.ndarray, Fit]:
    """A stack (N, rows, cols) of one size resized (bilinear, antialiased when shrinking) and
    padded with each image's `fill` (N,) to (N, *target) float32."""
    fit = fit_geometry(images.shape[1:], target)
    values = np.ascontiguousarray(images, dtype=np.float32)
    if fit.resized != fit.source:
        tensor = torch.from_numpy(values)[:, None]
        shrinking = fit.resized[0] < fit.source[0] or fit.resized[1] < fit.source[1]
        tensor = torch.nn.functional.interpolate(
            tensor, size=fit.resized, mode="bilinear", align_corners=False, antialias=shrinking
        )
        values = tensor[:, 0].numpy()
    if fit.resized == tuple(target):
        return values, fit
    top, _, left, _ = fit.pad
    out = np.empty((values.shape[0], *target), dtype=np.float32)
    out[...] = np.asarray(fill, dtype=np.float32)[:, None, None]
    out[:, top : top + fit.resized[0], left : left + fit.resized[1]] = values
    return out, fit
