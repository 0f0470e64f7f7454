"""Filters against expectations computed independently: sine amplitudes measured by
projection, a slow per-lead z-score, and NaN positions worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.modalities.biosignal.filters import bandpass, notch, resample, zscore


def sines(fs: float, seconds: float, *parts: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(round(fs * seconds))) / fs
    return t, sum(a * np.sin(2 * np.pi * f * t) for f, a in parts)


def amplitude(x: np.ndarray, t: np.ndarray, freq: float) -> float:
    """Amplitude of the `freq` component over a whole number of its periods, by projection."""
    c = np.sum(x * np.cos(2 * np.pi * freq * t)) * 2 / len(t)
    s = np.sum(x * np.sin(2 * np.pi * freq * t)) * 2 / len(t)
    return float(np.hypot(c, s))


def middle(t: np.ndarray, *arrays: np.ndarray, start: float = 2.0, stop: float = 8.0):
    keep = (t >= start) & (t < stop)
    return (t[keep], *(a[..., keep] for a in arrays))


def test_notch_removes_mains_and_keeps_the_rest() -> None:
    fs = 500.0
    t, x = sines(fs, 10, (1.0, 1.0), (50.0, 0.5))
    out = notch(x[None], fs, 50.0)[0]
    tm, xm, om = middle(t, x, out)
    assert amplitude(xm, tm, 50) == pytest.approx(0.5, rel=1e-3)
    assert amplitude(om, tm, 50) < 0.005
    assert amplitude(om, tm, 1) == pytest.approx(1.0, rel=0.02)


def test_bandpass_keeps_in_band_amplitude_within_two_percent() -> None:
    fs = 500.0
    t, x = sines(fs, 10, (1.0, 1.0), (120.0, 0.5), (0.05, 2.0))
    out = bandpass(x[None], fs, 0.5, 40.0)[0]
    tm, om = middle(t, out, start=1.0, stop=9.0)
    assert amplitude(om, tm, 1) == pytest.approx(1.0, rel=0.02)
    # squared 4th-order Butterworth: 1 / (1 + (120/40)^8) of the amplitude is left
    assert amplitude(om, tm, 120) < 0.01 * 0.5
    assert abs(om.mean()) < 0.05  # the 0.05 Hz drift is gone


def test_lowpass_and_highpass_forms() -> None:
    fs = 200.0
    t, x = sines(fs, 10, (2.0, 1.0), (60.0, 1.0))
    low = bandpass(x[None], fs, None, 20.0)[0]
    high = bandpass(x[None], fs, 20.0, None)[0]
    tm, lm, hm = middle(t, low, high)
    assert amplitude(lm, tm, 2) == pytest.approx(1.0, rel=0.02) and amplitude(lm, tm, 60) < 0.01
    assert amplitude(hm, tm, 60) == pytest.approx(1.0, rel=0.02) and amplitude(hm, tm, 2) < 0.01


@pytest.mark.parametrize(
    ("low", "high", "text"),
    [
        (0.5, 50.0, "high=50.0"),
        (None, 70.0, "high=70.0"),
        (30.0, 20.0, "low=30.0"),
        (None, None, "needs low, high"),
    ],
)
def test_bandpass_rejects_bad_cutoffs(low: float | None, high: float | None, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        bandpass(np.zeros((1, 100)), 100.0, low, high)


def test_resample_keeps_frequency_and_amplitude() -> None:
    fs, target = 360.0, 128.0
    t, x = sines(fs, 10, (5.0, 1.0))
    out = resample(np.stack([x, 2 * x]), fs, target)
    assert out.shape == (2, round(x.size * target / fs))
    t_out = np.arange(out.shape[1]) / target
    spectrum = np.abs(np.fft.rfft(out[0]))
    assert np.fft.rfftfreq(out.shape[1], 1 / target)[np.argmax(spectrum)] == pytest.approx(5.0)
    tm, om = middle(t_out, out)
    np.testing.assert_allclose(om[0], np.sin(2 * np.pi * 5 * tm), atol=0.01)
    assert amplitude(om[1], tm, 5) == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize(("fs", "target"), [(250.0, 360.0), (1000.0, 100.0), (117.0, 125.0)])
def test_resample_length_is_rounded_ratio(fs: float, target: float) -> None:
    out = resample(np.random.default_rng(0).normal(size=(3, 1001)), fs, target)
    assert out.shape == (3, round(1001 * target / fs))


def test_nan_positions_survive_resampling() -> None:
    fs, target = 360.0, 128.0
    t, x = sines(fs, 6, (3.0, 1.0))
    x[(t >= 2.0) & (t < 2.5)] = np.nan
    out = resample(x[None], fs, target)[0]
    t_out = np.arange(out.size) / target
    assert np.isnan(out[(t_out >= 2.0) & (t_out < 2.5)]).all()
    outside = (t_out < 2.0 - 1 / target) | (t_out >= 2.5 + 1 / target)
    assert np.isfinite(out[outside]).all()
    assert np.isnan(out).sum() <= 0.5 * target + 2


@pytest.mark.parametrize(
    "apply", [lambda x: notch(x, 250.0, 50.0), lambda x: bandpass(x, 250.0, 1, 40)]
)
def test_filters_keep_nan_where_it_was(apply) -> None:  # noqa: ANN001
    t, x = sines(250.0, 8, (1.0, 1.0))
    gappy = np.stack([x.copy(), x.copy()])
    gappy[0, 1000:1100] = np.nan
    gappy[1, :] = np.nan
    out = apply(gappy)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(gappy))
    clean = apply(x[None])[0]
    np.testing.assert_allclose(out[0, :700], clean[:700], atol=0.02)


def test_zscore_matches_a_per_lead_loop() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(3, 50))
    x[1, [4, 9, 30]] = np.nan
    x[2] = np.nan
    out = zscore(x, eps=1e-6)
    for c in range(2):
        kept = [v for v in x[c] if v == v]
        mean = sum(kept) / len(kept)
        std = (sum((v - mean) ** 2 for v in kept) / len(kept)) ** 0.5
        for i, v in enumerate(x[c]):
            if v == v:
                assert out[c, i] == pytest.approx((v - mean) / (std + 1e-6), rel=1e-9)
            else:
                assert np.isnan(out[c, i])
    assert np.isnan(out[2]).all()
