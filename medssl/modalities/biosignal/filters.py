"""Deterministic preprocessing of (C, T) float64 signals: polyphase resampling, zero-phase
band-pass and notch filters, per-lead z-scoring; every one leaves missing samples missing.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np
from scipy import signal as sps


def resample(values: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Resample every lead from `fs` to `target_fs` Hz with a polyphase FIR filter.

    The rate ratio is the fraction up/down = Fraction(target_fs / fs) limited to a
    denominator of 1000 (scipy.signal.resample_poly, Kaiser-windowed anti-aliasing). The
    output has round(T * target_fs / fs) samples. An output sample is NaN when any input
    sample within its own sampling interval was NaN.

    Example:
        >>> resample(np.zeros((2, 360)), 360.0, 128.0).shape
        (2, 128)
    """
    _check_rate(fs, "fs")
    _check_rate(target_fs, "target_fs")
    x = _as_leads(values)
    length = int(round(x.shape[1] * target_fs / fs))
    if target_fs == fs:
        return x.copy()
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    bridged, missing = _bridge(x)
    out = sps.resample_poly(bridged, ratio.numerator, ratio.denominator, axis=1)
    out = _fit_length(out, length)
    if missing.any():
        out[resampled_mask(missing, fs / target_fs, length)] = np.nan
    return out


def bandpass(
    values: np.ndarray, fs: float, low: float | None, high: float | None, order: int = 4
) -> np.ndarray:
    """Zero-phase Butterworth filter (forward-backward second-order sections, so the
    magnitude response is squared and there is no phase lag).

    low: lower cut-off in Hz, or None for a low-pass at `high`.
    high: upper cut-off in Hz (below fs / 2), or None for a high-pass at `low`.
    order: order of the Butterworth prototype before the forward-backward pass.
    """
    _check_rate(fs, "fs")
    nyquist = fs / 2
    if low is None and high is None:
        raise ValueError("bandpass needs low, high or both; got low=None, high=None")
    if low is not None and not 0 < low < nyquist:
        raise ValueError(f"low={low} Hz must lie between 0 and fs/2 = {nyquist} Hz")
    if high is not None and not 0 < high < nyquist:
        raise ValueError(f"high={high} Hz must lie between 0 and fs/2 = {nyquist} Hz")
    if low is not None and high is not None and low >= high:
        raise ValueError(f"low={low} Hz must be below high={high} Hz")
    if order < 1:
        raise ValueError(f"order must be at least 1; got {order}")
    if low is None:
        sos = sps.butter(order, high, btype="lowpass", fs=fs, output="sos")
    elif high is None:
        sos = sps.butter(order, low, btype="highpass", fs=fs, output="sos")
    else:
        sos = sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")

    def run(x: np.ndarray) -> np.ndarray:
        return sps.sosfiltfilt(sos, x, axis=1, padlen=min(3 * (2 * len(sos) + 1), x.shape[1] - 1))

    return _nan_safe(values, run)


def notch(values: np.ndarray, fs: float, freq: float, quality: float = 30.0) -> np.ndarray:
    """Zero-phase IIR notch at `freq` Hz (mains hum: 50 or 60) with quality factor
    `quality` = freq / bandwidth (scipy.signal.iirnotch), run forward and backward."""
    _check_rate(fs, "fs")
    if not 0 < freq < fs / 2:
        raise ValueError(f"freq={freq} Hz must lie between 0 and fs/2 = {fs / 2} Hz")
    if not quality > 0:
        raise ValueError(f"quality must be positive; got {quality}")
    b, a = sps.iirnotch(freq, quality, fs=fs)

    def run(x: np.ndarray) -> np.ndarray:
        return sps.filtfilt(b, a, x, axis=1, padlen=min(3 * max(len(a), len(b)), x.shape[1] - 1))

    return _nan_safe(values, run)


def zscore(values: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(x - mean) / (std + eps) per lead over time, NaN samples ignored and kept; a lead with
    no finite sample stays all NaN."""
    if eps < 0:
        raise ValueError(f"eps must be non-negative; got {eps}")
    x = _as_leads(values)
    out = np.full_like(x, np.nan)
    for c, lead in enumerate(x):
        finite = np.isfinite(lead)
        if finite.any():
            kept = lead[finite]
            out[c, finite] = (kept - kept.mean()) / (kept.std() + eps)
    return out


def _nan_safe(values: np.ndarray, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    x = _as_leads(values)
    if x.shape[1] < 2:
        return x.copy()
    bridged, missing = _bridge(x)
    out = np.asarray(run(bridged), dtype=np.float64)
    out[missing] = np.nan
    return out


def _bridge(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN runs replaced by straight lines between their neighbours (the edge value at the
    ends), so filters see no step; a lead with no finite sample becomes zeros."""
    missing = ~np.isfinite(x)
    if not missing.any():
        return x, missing
    bridged = x.copy()
    positions = np.arange(x.shape[1])
    for c in np.flatnonzero(missing.any(axis=1)):
        known = ~missing[c]
        if known.any():
            bridged[c, ~known] = np.interp(positions[~known], positions[known], x[c, known])
        else:
            bridged[c] = 0.0
    return bridged, missing


def resampled_mask(missing: np.ndarray, step: float, length: int) -> np.ndarray:
    """Output sample j covers input positions [(j - 1/2) step, (j + 1/2) step); it is missing
    when an input sample whose own interval [i - 1/2, i + 1/2) overlaps that span is."""
    total = missing.shape[1]
    centres = np.arange(length) * step
    first = np.clip(np.floor(centres - step / 2 + 0.5).astype(np.int64), 0, total - 1)
    last = np.clip(np.ceil(centres + step / 2 - 0.5).astype(np.int64), 0, total - 1)
    last = np.maximum(last, first)
    counts = np.concatenate([np.zeros((len(missing), 1)), np.cumsum(missing, axis=1)], axis=1)
    return (counts[:, last + 1] - counts[:, first]) > 0


def _fit_length(out: np.ndarray, length: int) -> np.ndarray:
    if out.shape[1] >= length:
        return np.ascontiguousarray(out[:, :length])
    pad = np.repeat(out[:, -1:], length - out.shape[1], axis=1) if out.shape[1] else None
    return np.concatenate([out, pad], axis=1) if pad is not None else np.zeros((len(out), length))


def _as_leads(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"values must be (C, T); got shape {x.shape}")
    return x


def _check_rate(rate: float, name: str) -> None:
    if not rate > 0:
        raise ValueError(f"{name} must be positive; got {rate}")
