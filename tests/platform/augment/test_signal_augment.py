"""Batched ECG/PPG augmentation: shapes and dtypes, keyed reproducibility, probabilities, and
each augmentation against a direct reference (FFT, Einthoven's law, loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from medssl.platform.augment.keyed import sample_keys
from medssl.platform.augment.signal import (
    ORDER,
    SignalAugmentConfig,
    applied_augmentations,
    augment_signals,
    cutout_length,
    resample_rows,
    smooth_curve,
    warp_positions,
)

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
FS = 100.0


def _keys(n: int, epoch: int = 0, view: int = 0, seed: int = 7) -> torch.Tensor:
    return sample_keys(torch.arange(n), seed=seed, epoch=epoch, view=view)


def _signals(batch: int, channels: int = 6, length: int = 200, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, length, generator=gen)


def _only(name: str, **extra: object) -> SignalAugmentConfig:
    return SignalAugmentConfig(**{name: 1.0, **extra})


ALL_ON = SignalAugmentConfig(**{name: 1.0 for name in ORDER})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", [*ORDER, "all"])
def test_shape_dtype_and_device_are_kept(name: str, dtype: torch.dtype) -> None:
    x = _signals(4).to(dtype)
    config = ALL_ON if name == "all" else _only(name)
    out = augment_signals(x, _keys(4), config, fs=FS, leads=LEADS)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out).all()
    assert out.data_ptr() != x.data_ptr()
    assert not torch.equal(out.float(), x.float()), f"{name} at probability 1 changed nothing"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    x, keys = _signals(4), _keys(4)
    cpu = augment_signals(x, keys, ALL_ON, fs=FS, leads=LEADS)
    gpu = augment_signals(x.cuda(), keys.cuda(), ALL_ON, fs=FS, leads=LEADS)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_same_keys_same_output_new_epoch_or_view_differs() -> None:
    x = _signals(6)
    first = augment_signals(x, _keys(6), ALL_ON, fs=FS, leads=LEADS)
    again = augment_signals(x.clone(), _keys(6), ALL_ON, fs=FS, leads=LEADS)
    assert torch.equal(first, again)
    for other in (_keys(6, epoch=1), _keys(6, view=1), _keys(6, seed=8)):
        out = augment_signals(x, other, ALL_ON, fs=FS, leads=LEADS)
        assert all(not torch.equal(out[i], first[i]) for i in range(6))


def test_a_sample_does_not_depend_on_the_rest_of_the_batch() -> None:
    x, keys = _signals(8), _keys(8)
    config = SignalAugmentConfig.preset("ppg").model_copy(
        update={"emg": 0.5, "powerline": 0.5, "baseline_wander": 0.5, "lead_mask": 0.5}
    )
    full = augment_signals(x, keys, config, fs=FS)
    order = torch.tensor([5, 2, 7, 0, 3])
    part = augment_signals(x[order], keys[order], config, fs=FS)
    torch.testing.assert_close(part, full[order], atol=1e-6, rtol=1e-6)
    alone = augment_signals(x[3:4], keys[3:4], config, fs=FS)
    torch.testing.assert_close(alone, full[3:4], atol=1e-6, rtol=1e-6)


def test_probability_zero_is_the_identity_and_keeps_nan() -> None:
    x = _signals(5)
    x[1, 2, 10:20] = math.nan
    odd_magnitudes = SignalAugmentConfig(gaussian_noise_std=3.0, cutout_fraction=0.9)
    for config in (SignalAugmentConfig.preset("none"), odd_magnitudes):
        out = augment_signals(x, _keys(5), config, fs=FS)
        assert torch.equal(torch.isnan(out), torch.isnan(x))
        assert torch.equal(out.nan_to_num(), x.nan_to_num())


@pytest.mark.parametrize(
    "name,p", [("gaussian_noise", 0.3), ("cutout", 0.7), ("magnitude_warp", 0.15)]
)
def test_fraction_of_changed_samples_matches_the_probability(name: str, p: float) -> None:
    n = 4000
    x = _signals(n, channels=1, length=16) + 5.0  # no zeros, so a cut-out always shows
    out = augment_signals(x, _keys(n), SignalAugmentConfig(**{name: p}), fs=FS)
    changed = (out != x).flatten(1).any(dim=1).double().mean().item()
    # Four binomial standard deviations.
    assert abs(changed - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_coins_are_independent_with_the_configured_probabilities() -> None:
    n = 4000
    probabilities = dict(
        zip(ORDER, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.05), strict=True)
    )
    coins = applied_augmentations(_keys(n), SignalAugmentConfig(**probabilities)).double()
    for column, name in enumerate(ORDER):
        p = probabilities[name]
        assert abs(coins[:, column].mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)
    both = (coins[:, 4] * coins[:, 5]).mean().item()
    assert abs(both - 0.5 * 0.6) < 4 * math.sqrt(0.3 * 0.7 / n)


def _spectrum(signal: torch.Tensor, fs: float) -> tuple[np.ndarray, np.ndarray]:
    values = signal.double().numpy()
    window = np.hanning(values.shape[-1])
    power = np.abs(np.fft.rfft(values * window, axis=-1)) ** 2
    return np.fft.rfftfreq(values.shape[-1], 1.0 / fs), power


def test_powerline_adds_a_50_or_60_hz_tone() -> None:
    fs, batch = 500.0, 32
    x = torch.zeros(batch, 2, 1000, dtype=torch.float64)
    out = augment_signals(x, _keys(batch), _only("powerline"), fs=fs)
    freqs, power = _spectrum(out, fs)
    peaks = set()
    for row in power.reshape(-1, power.shape[-1]):
        peak = freqs[row.argmax()]
        near = np.abs(freqs - peak) <= 2.0
        assert peak in (50.0, 60.0)
        assert row[near].sum() > 0.999 * row.sum()
        peaks.add(float(peak))
    assert peaks == {50.0, 60.0}
    assert out.abs().max() < 0.1 + 1e-9


def test_powerline_skips_frequencies_above_nyquist() -> None:
    out = augment_signals(torch.zeros(16, 1, 440), _keys(16), _only("powerline"), fs=110.0)
    freqs, power = _spectrum(out[:, 0], 110.0)
    assert np.all(freqs[power.argmax(axis=-1)] == 50.0)
    with pytest.raises(ValueError, match="fs / 2"):
        augment_signals(torch.zeros(2, 1, 40), _keys(2), _only("powerline"), fs=90.0)


def test_baseline_wander_stays_below_its_cutoff() -> None:
    fs, batch = 20.0, 16
    x = torch.zeros(batch, 3, 20 * 120, dtype=torch.float64)  # two minutes
    out = augment_signals(x, _keys(batch), _only("baseline_wander"), fs=fs)
    freqs, power = _spectrum(out, fs)
    total = power.sum(axis=-1)
    assert np.all(total > 0)
    # The Hann window's leakage from a tone below 0.2 Hz is negligible by 0.3 Hz.
    assert np.all(power[..., freqs > 0.3].sum(axis=-1) < 1e-4 * total)
    assert out.abs().max() <= 3 * 0.25 + 1e-9


def test_emg_is_high_frequency_bursty_noise() -> None:
    fs, batch = 500.0, 8
    out = augment_signals(torch.zeros(batch, 2, 2000), _keys(batch), _only("emg"), fs=fs)
    freqs, power = _spectrum(out, fs)
    assert np.all(power[..., freqs > fs / 4].sum(-1) > 3 * power[..., freqs < fs / 8].sum(-1))
    assert 0 < out.std().item() < 0.1


def test_limb_leads_follow_einthoven_and_goldberger_exactly() -> None:
    names = ["aVF", "I", "V1", "III", "II", "avr", "AVL"]  # any order, any case
    x = _signals(3, channels=7, seed=1).double()
    out = augment_signals(x, _keys(3), _only("limb_leads"), fs=FS, leads=names)
    expected = x.clone()
    for b in range(3):
        for t in range(x.shape[-1]):
            lead_i, lead_ii = float(x[b, 1, t]), float(x[b, 4, t])
            expected[b, 3, t] = lead_ii - lead_i
            expected[b, 5, t] = -(lead_i + lead_ii) / 2
            expected[b, 6, t] = lead_i - lead_ii / 2
            expected[b, 0, t] = lead_ii - lead_i / 2
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def test_limb_leads_need_i_and_ii() -> None:
    x = _signals(2, channels=3)
    with pytest.raises(ValueError, match=r"'V1', 'II', 'III'"):
        augment_signals(x, _keys(2), _only("limb_leads"), fs=FS, leads=["V1", "II", "III"])
    with pytest.raises(ValueError, match="leads None"):
        augment_signals(x, _keys(2), _only("limb_leads"), fs=FS)
    with pytest.raises(ValueError, match="3 channels"):
        augment_signals(x, _keys(2), _only("limb_leads"), fs=FS, leads=["I", "II"])


def test_derived_lead_is_missing_where_i_is_missing() -> None:
    x = _signals(2)
    x[:, 0, 5:9] = math.nan
    out = augment_signals(x, _keys(2), _only("limb_leads"), fs=FS, leads=LEADS)
    assert torch.isnan(out[:, [0, 2, 3, 4, 5], 5:9]).all()
    assert not torch.isnan(out[:, 1]).any() and not torch.isnan(out[:, :, 9:]).any()


@pytest.mark.parametrize("channels", [1, 2, 12])
def test_lead_mask_never_zeroes_every_lead(channels: int) -> None:
    n = 2000
    x = _signals(n, channels=channels, length=8) + 5.0
    out = augment_signals(x, _keys(n), _only("lead_mask"), fs=FS)
    zeroed = (out == 0).all(dim=-1)
    kept = (out == x).all(dim=-1)
    assert torch.all(zeroed | kept)
    assert not zeroed.all(dim=1).any()
    if channels == 12:
        assert abs(zeroed.double().mean().item() - 0.5) < 0.02


def test_channel_permutation_is_a_permutation_of_whole_channels() -> None:
    x = _signals(64, channels=4, length=10)
    out = augment_signals(x, _keys(64), _only("channel_permutation"), fs=FS)
    assert torch.equal(out.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
    moved = 0
    for b in range(64):
        sources = [int((x[b] == out[b, c]).all(dim=-1).nonzero()) for c in range(4)]
        assert sorted(sources) == [0, 1, 2, 3]
        moved += sources != [0, 1, 2, 3]
    assert moved > 48  # 23 of 24 permutations move something


def test_nan_travels_with_its_channel() -> None:
    x = _signals(32, channels=4, length=10)
    x[:, 2] = math.nan
    out = augment_signals(x, _keys(32), _only("channel_permutation"), fs=FS)
    assert torch.equal(torch.isnan(out).sum(dim=(1, 2)), torch.full((32,), 10))
    assert torch.equal(out.nan_to_num(7.0).sort(dim=1).values, x.nan_to_num(7.0).sort(dim=1).values)


def test_time_warp_keeps_a_constant_and_the_ends() -> None:
    x = torch.full((16, 3, 300), 3.7, dtype=torch.float64)
    out = augment_signals(x, _keys(16), _only("time_warp"), fs=FS)
    torch.testing.assert_close(out, x, atol=1e-12, rtol=0)
    ramp = torch.linspace(-1, 1, 300).expand(16, 3, 300).contiguous()
    warped = augment_signals(ramp, _keys(16), _only("time_warp"), fs=FS)
    torch.testing.assert_close(warped[..., [0, -1]], ramp[..., [0, -1]])
    assert (warped.diff(dim=-1) >= -1e-6).all() and not torch.allclose(warped, ramp, atol=1e-3)


def test_resampling_matches_numpy_interp() -> None:
    x = _signals(3, channels=2, length=50).double()
    position = warp_positions(_keys(3), 50, 0.4, 4, torch.float64)
    assert (position.diff(dim=1) > 0).all()
    out = resample_rows(x, position)
    for b in range(3):
        for c in range(2):
            reference = np.interp(position[b].numpy(), np.arange(50), x[b, c].numpy())
            np.testing.assert_allclose(out[b, c].numpy(), reference, atol=1e-12)


def test_smooth_curve_passes_through_its_knots() -> None:
    knots = torch.randn(5, 6, dtype=torch.float64)
    curve = smooth_curve(knots, 5 * 10 + 1)
    torch.testing.assert_close(curve[:, ::10], knots, atol=1e-9, rtol=0)


def test_magnitude_warp_scales_by_a_smooth_positive_curve() -> None:
    x = torch.ones(8, 2, 400)
    out = augment_signals(x, _keys(8), _only("magnitude_warp"), fs=FS)
    assert (out.diff(dim=-1).abs() < 0.05).all()
    assert 0.05 < out.std().item() < 0.5


@pytest.mark.parametrize(
    "extra,expected", [({}, 20), ({"cutout_fraction": 0.25}, 50), ({"cutout_seconds": 0.33}, 33)]
)
def test_cutout_zeroes_one_contiguous_run_of_the_configured_length(
    extra: dict[str, float], expected: int
) -> None:
    config = _only("cutout", **extra)
    assert cutout_length(config, 200, FS) == expected
    x = _signals(40, channels=3) + 10.0
    out = augment_signals(x, _keys(40), config, fs=FS)
    starts = set()
    for b in range(40):
        zero = (out[b] == 0).all(dim=0)
        assert torch.equal((out[b] == 0).any(dim=0), zero)
        run = zero.nonzero().flatten()
        assert len(run) == expected and torch.equal(run, torch.arange(run[0], run[0] + expected))
        assert torch.equal(out[b, :, ~zero], x[b, :, ~zero])
        starts.add(int(run[0]))
    assert len(starts) > 10


def test_presets_and_config_validation() -> None:
    ppg, ecg = SignalAugmentConfig.preset("ppg"), SignalAugmentConfig.preset("ecg")
    assert (ppg.cutout, ppg.magnitude_warp, ppg.gaussian_noise) == (0.4, 0.25, 0.25)
    assert (ppg.channel_permutation, ppg.time_warp) == (0.25, 0.15)
    assert (ecg.cutout, ecg.magnitude_warp, ecg.gaussian_noise, ecg.time_warp) == (
        0.8,
        0.5,
        0.5,
        0.3,
    )
    assert ecg.channel_permutation == 0 and ecg.limb_leads == 0
    assert all(getattr(SignalAugmentConfig.preset("none"), name) == 0 for name in ORDER)
    for bad in ({"cutout": 1.5}, {"time_warp": -0.1}, {"colour": 0.5}, {"powerline_hz": ()}):
        with pytest.raises(ValidationError):
            SignalAugmentConfig(**bad)
    with pytest.raises(ValueError, match="preset"):
        SignalAugmentConfig.preset("eeg")  # type: ignore[arg-type]


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, T\)"):
        augment_signals(torch.zeros(2, 10), _keys(2), ALL_ON, fs=FS)
    with pytest.raises(ValueError, match="keys"):
        augment_signals(torch.zeros(2, 1, 10), _keys(3), SignalAugmentConfig(), fs=FS)
    with pytest.raises(ValueError, match="fs"):
        augment_signals(torch.zeros(2, 1, 10), _keys(2), SignalAugmentConfig(), fs=0.0)


@pytest.mark.integration
def test_recomputed_limb_leads_match_a_real_12_lead_recording(shared_data) -> None:
    wfdb = pytest.importorskip("wfdb")
    record = wfdb.rdrecord(
        str(shared_data / "physio" / "wfdb" / "s0010_re"), sampto=2000, channels=list(range(12))
    )
    x = torch.from_numpy(record.p_signal.T.copy())[None]  # mV, so Einthoven's law holds
    assert record.sig_name[:6] == ["i", "ii", "iii", "avr", "avl", "avf"]
    erased = x.clone()
    erased[:, 2:6] = 0.0
    out = augment_signals(
        erased, _keys(1), _only("limb_leads"), fs=record.fs, leads=record.sig_name
    )
    # The recomputed leads match the recorded ones to the 0.5 uV quantisation step.
    assert (out - x).abs().max() < 1e-3
    assert torch.equal(out[:, [0, 1, *range(6, 12)]], x[:, [0, 1, *range(6, 12)]])
    assert x[:, 2:6].abs().max() > 0.3
