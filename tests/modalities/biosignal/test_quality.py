"""Quality checks: synthetic flat, clipped and NaN runs found at the right times, a slow loop
reference for the bad-sample mask, and real records (clean, and with dropouts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.biosignal.quality import QualityIssue, bad_samples, quality_issues
from medssl.modalities.biosignal.readers import read_signal
from medssl.modalities.biosignal.signal import Signal


def reference_bad(x: np.ndarray, fs: float, flat_seconds: float, clip_run: int) -> np.ndarray:
    """The definition, sample by sample with plain loops."""
    channels, total = x.shape
    bad = np.zeros((channels, total), dtype=bool)
    need = max(2, int(np.ceil(flat_seconds * fs - 1e-9)))
    for c in range(channels):
        finite = [v for v in x[c] if v == v]
        low, high = (min(finite), max(finite)) if finite else (None, None)
        i = 0
        while i < total:
            j = i
            while j + 1 < total and x[c, j + 1] == x[c, i]:
                j += 1
            length = j - i + 1
            value = x[c, i]
            if value != value:
                bad[c, i] = True
            elif length >= need or (value in (low, high) and length >= clip_run):
                bad[c, i : j + 1] = True
            i = j + 1
    return bad


def test_synthetic_runs_found_at_the_right_times() -> None:
    fs = 100.0
    t = np.arange(2000) / fs
    x = np.stack([np.sin(2 * np.pi * 1.3 * t)] * 3)
    x[0, 500:800] = 0.3  # flat from 5.0 s to 8.0 s
    x[1] = np.clip(x[1], -2, 0.8)  # every peak of a 1.3 Hz sine is clipped at 0.8
    x[2, 1200:1250] = np.nan  # missing from 12.0 s to 12.5 s
    signal = Signal(x, fs, ("I", "II", "III"), ("mV",) * 3, "synthetic")
    issues = quality_issues(signal)
    assert [i for i in issues if i.lead == "I"] == [QualityIssue("I", "flat", 5.0, 8.0)]
    assert [i for i in issues if i.lead == "III"] == [QualityIssue("III", "nan", 12.0, 12.5)]
    clipped = [i for i in issues if i.lead == "II"]
    above = np.flatnonzero(np.diff(np.concatenate([[0], (x[1] >= 0.8).astype(int), [0]])))
    expected = [(a / fs, b / fs) for a, b in zip(above[::2], above[1::2], strict=True)]
    assert [(i.start, i.stop) for i in clipped] == expected
    assert {i.kind for i in clipped} == {"clipped"} and len(clipped) == 26
    assert str(QualityIssue("II", "flat", 12.0, 20.5)) == "lead II: flat from 12.0 s to 20.5 s"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bad_samples_matches_the_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(3, 400)), 1)
    for c in range(3):
        start = rng.integers(0, 350)
        x[c, start : start + rng.integers(5, 40)] = rng.choice([np.nan, 0.5, x[c].max()])
    x[1, 10:16] = np.nanmin(x[1]) - 1  # a new global minimum held for 6 samples
    for flat_seconds, clip_run in [(0.1, 5), (0.25, 3), (1.0, 8)]:
        got = bad_samples(x, 50.0, flat_seconds=flat_seconds, clip_run=clip_run)
        np.testing.assert_array_equal(got, reference_bad(x, 50.0, flat_seconds, clip_run))


def test_a_stuck_lead_is_flat_not_clipped_and_bad_arguments_fail() -> None:
    signal = Signal(np.zeros((1, 300)), 100.0, ("V1",), ("mV",), "stuck")
    assert [str(i) for i in quality_issues(signal)] == ["lead V1: flat from 0.0 s to 3.0 s"]
    with pytest.raises(ValueError, match="-1"):
        bad_samples(np.zeros((1, 10)), 100.0, flat_seconds=-1)
    with pytest.raises(ValueError, match="shape"):
        bad_samples(np.zeros(10), 100.0)


@pytest.mark.integration
def test_clean_real_record_has_no_issue(shared_data: Path) -> None:
    signal = read_signal(shared_data / "physio" / "wfdb" / "s0010_re.hea")
    assert quality_issues(signal) == []


@pytest.mark.integration
def test_real_dropouts_are_reported_as_nan(shared_data: Path) -> None:
    signal = read_signal(shared_data / "physio" / "wfdb" / "v102s.hea")
    issues = [i for i in quality_issues(signal) if i.kind == "nan"]
    for c, lead in enumerate(signal.leads):
        seconds = sum(i.stop - i.start for i in issues if i.lead == lead)
        assert seconds * signal.fs == pytest.approx(np.isnan(signal.values[c]).sum())
    assert any(i.lead == "PLETH" for i in issues)
