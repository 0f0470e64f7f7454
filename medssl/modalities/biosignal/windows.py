"""Cutting preprocessed records into segments: fixed windows, beat-centred windows labelled from
annotations, a split of each record by time, and rejection of windows over bad samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: AAMI beat classes as WFDB symbols: N (normal and bundle-branch / escape beats) against the
#: rest (supraventricular, ventricular, fusion, paced, unclassifiable beats). Other symbols
#: (rhythm changes "+", noise "~", comments) are not beats and make no window.
NORMAL_BEATS = ("N", "L", "R", "e", "j")
OTHER_BEATS = ("A", "a", "J", "S", "V", "E", "F", "/", "f", "Q")
SPLIT_NAMES = ("train", "val", "test")


def fixed_starts(samples: int, length: int, stride: int) -> np.ndarray:
    """Starts of the windows of `length` every `stride` samples that fit in `samples`.

    Example:
        >>> fixed_starts(10, 4, 3).tolist()
        [0, 3, 6]
    """
    if length < 1 or stride < 1:
        raise ValueError(f"length and stride must be >= 1, got {length} and {stride}")
    if samples < length:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, samples - length + 1, stride, dtype=np.int64)


def beat_starts(
    beat_samples: np.ndarray,
    symbols: Sequence[str],
    *,
    scale: float,
    length: int,
    samples: int,
    normal: Sequence[str] = NORMAL_BEATS,
    other: Sequence[str] = OTHER_BEATS,
) -> tuple[np.ndarray, np.ndarray]:
    """(starts, labels) of windows centred on each annotated beat: label 0 for `normal`
    symbols, 1 for `other`; non-beat annotations and beats whose window would leave the
    record are skipped.

    Args:
        beat_samples: annotation positions at the record's own rate.
        symbols: the annotation symbols, one per position.
        scale: target rate / record rate (positions are moved to the target rate).
        length: window length in samples at the target rate.
        samples: record length at the target rate.

    Example:
        >>> starts, labels = beat_starts(np.array([100, 200, 300]), ["N", "+", "V"],
        ...                              scale=0.5, length=20, samples=200)
        >>> starts.tolist(), labels.tolist()
        ([40, 140], [0, 1])
    """
    symbols = np.asarray(symbols, dtype=object)
    is_normal = np.isin(symbols, list(normal))
    is_other = np.isin(symbols, list(other))
    centre = np.round(np.asarray(beat_samples, dtype=np.float64) * scale).astype(np.int64)
    starts = centre - length // 2
    keep = (is_normal | is_other) & (starts >= 0) & (starts + length <= samples)
    return starts[keep], np.where(is_normal[keep], 0, 1).astype(np.int64)


def time_splits(
    starts: np.ndarray, length: int, samples: int, fractions: Sequence[float]
) -> np.ndarray:
    """The split ("train", "val", "test") of each window when a record's first
    fractions[0] of time trains, the next fractions[1] validates and the rest tests. Windows
    within `length` samples of an inner boundary get "" (drop them): no beat reaches both
    sides, and neither do the tails of the zero-phase filters run over the whole record.

    Example:
        >>> time_splits(np.array([0, 4, 10, 16]), 4, 20, (0.5, 0.0, 0.5)).tolist()
        ['train', '', '', 'test']
    """
    edges = np.concatenate([[0.0], np.cumsum(fractions)]) * samples
    edges[-1] = max(edges[-1], samples)
    out = np.full(len(starts), "", dtype=object)
    for k, (name, low, high) in enumerate(zip(SPLIT_NAMES, edges[:-1], edges[1:], strict=True)):
        guard_low = low + length if k > 0 else low
        guard_high = high - length if k < len(SPLIT_NAMES) - 1 else high
        inside = (starts >= guard_low) & (starts + length <= guard_high)
        out[inside] = name
    return out


def clean_windows(starts: np.ndarray, length: int, bad: np.ndarray) -> np.ndarray:
    """Mask of windows that touch no bad sample (`bad`: (T,) bool, any lead).

    Example:
        >>> clean_windows(np.array([0, 4]), 4, np.array([0, 0, 0, 0, 0, 1, 0, 0], bool)).tolist()
        [True, False]
    """
    if len(starts) == 0:
        return np.zeros(0, dtype=bool)
    counts = np.concatenate([[0], np.cumsum(bad.astype(np.int64))])
    return (counts[starts + length] - counts[starts]) == 0
