"""Normalisation of NaN-padded series: per-dataset z-scores fitted on the training series only,
or per-series z-scores; missing values and padding stay NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Normalisation = Literal["dataset", "series", "none"]


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation (float64, shape (C,))."""

    mean: np.ndarray
    std: np.ndarray

    def as_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def fit_channel_stats(values: np.ndarray) -> ChannelStats:
    """Mean and standard deviation of each channel of (N, C, T) over every observed value
    (NaN ignored), as TS2Vec's UEA loader fits its StandardScaler on the training set.
    A channel with no spread (or no value) gets std 1 so it is centred, not blown up."""
    if values.ndim != 3:
        raise ValueError(f"values must be (N, C, T), got shape {values.shape}")
    flat = np.moveaxis(values, 1, 0).reshape(values.shape[1], -1).astype(np.float64)
    observed = ~np.isnan(flat)
    count = observed.sum(axis=1)
    safe = np.where(observed, flat, 0.0)
    mean = np.divide(safe.sum(axis=1), count, out=np.zeros(flat.shape[0]), where=count > 0)
    var = np.divide(
        (np.where(observed, flat - mean[:, None], 0.0) ** 2).sum(axis=1),
        count,
        out=np.zeros(flat.shape[0]),
        where=count > 0,
    )
    std = np.sqrt(var)
    return ChannelStats(mean, np.where(std > 0, std, 1.0))


def apply_channel_stats(values: np.ndarray, stats: ChannelStats) -> np.ndarray:
    """(values - mean) / std per channel, as float32; NaN stays NaN."""
    if values.shape[1] != stats.mean.shape[0]:
        raise ValueError(
            f"values have {values.shape[1]} channels, the statistics {stats.mean.shape[0]}"
        )
    out = (values.astype(np.float64) - stats.mean[None, :, None]) / stats.std[None, :, None]
    return out.astype(np.float32)


def znormalise_series(values: np.ndarray) -> np.ndarray:
    """Each channel of each series to zero mean and unit variance over its own observed
    steps (the UCR archive's convention); constant channels are only centred."""
    v = values.astype(np.float64)
    with np.errstate(invalid="ignore"):
        observed = ~np.isnan(v)
        count = observed.sum(axis=2, keepdims=True)
        mean = np.where(observed, v, 0.0).sum(axis=2, keepdims=True) / np.maximum(count, 1)
        var = (np.where(observed, v - mean, 0.0) ** 2).sum(axis=2, keepdims=True) / np.maximum(
            count, 1
        )
    std = np.sqrt(var)
    return ((v - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def normalise(
    values: np.ndarray, train_mask: np.ndarray, how: Normalisation
) -> tuple[np.ndarray, ChannelStats | None]:
    """Normalise (N, C, T) values. "dataset" fits per-channel statistics on the series where
    `train_mask` is True and applies them to all; "series" z-normalises each series on its
    own; "none" returns the values as float32. Returns the values and the fitted statistics."""
    if how == "dataset":
        if not np.any(train_mask):
            raise ValueError("dataset normalisation needs at least one training series")
        stats = fit_channel_stats(values[np.asarray(train_mask, dtype=bool)])
        return apply_channel_stats(values, stats), stats
    if how == "series":
        return znormalise_series(values), None
    if how == "none":
        return values.astype(np.float32), None
    raise ValueError(f"normalisation must be 'dataset', 'series' or 'none', got {how!r}")
