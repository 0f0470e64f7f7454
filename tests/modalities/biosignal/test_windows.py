"""Segment cutting: fixed and beat-centred windows, the time split that never lets a segment
reach two splits, and rejection of segments over bad samples."""

from __future__ import annotations

import numpy as np

from medssl.modalities.biosignal.windows import (
    beat_starts,
    clean_windows,
    fixed_starts,
    time_splits,
)


def test_fixed_starts_fit_inside_the_record() -> None:
    starts = fixed_starts(1000, 128, 64)
    assert starts[0] == 0 and starts[-1] + 128 <= 1000 and starts[-1] + 64 + 128 > 1000
    assert len(fixed_starts(100, 128, 64)) == 0


def test_beat_windows_centre_on_beats_at_the_new_rate() -> None:
    samples = np.array([360, 720, 1080, 30])
    starts, labels = beat_starts(
        samples, ["N", "A", "~", "V"], scale=128 / 360, length=256, samples=2000
    )
    # "~" is noise, not a beat; the beat at sample 30 would start before the record.
    assert labels.tolist() == [0, 1]
    assert starts.tolist() == [128 - 128, 256 - 128]


def test_time_split_never_straddles_and_is_causal() -> None:
    length, samples = 50, 1000
    starts = np.arange(0, samples - length + 1, 7)
    splits = time_splits(starts, length, samples, (0.6, 0.2, 0.2))
    order = {"train": 0, "val": 1, "test": 2}
    last_end = {name: -1 for name in order}
    first_start = {name: samples for name in order}
    for start, split in zip(starts, splits, strict=True):
        if split == "":
            # A dropped segment lies within one segment length of a boundary.
            assert any(start - length < edge < start + 2 * length for edge in (600, 800))
            continue
        last_end[split] = max(last_end[split], start + length)
        first_start[split] = min(first_start[split], start)
    # Every training sample comes before every validation sample, and so on: nothing of the
    # future reaches an earlier split.
    # A guard of one segment length on each side of a boundary keeps filter tails out.
    assert last_end["train"] <= 600 - length and first_start["val"] >= 600 + length
    assert last_end["val"] <= 800 - length and first_start["test"] >= 800 + length


def test_clean_windows_drop_segments_touching_bad_samples() -> None:
    bad = np.zeros(100, dtype=bool)
    bad[[10, 99]] = True
    keep = clean_windows(np.array([0, 11, 50, 80]), 20, bad)
    assert keep.tolist() == [False, True, True, False]
