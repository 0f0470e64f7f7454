"""Normalisation: statistics against float64 loops, fitted on TRAIN series only (test data
never reaches them), padding kept as NaN, and per-series z-scores."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.modalities.timeseries import TimeSeriesModality
from medssl.modalities.timeseries.normalise import (
    apply_channel_stats,
    fit_channel_stats,
    normalise,
    znormalise_series,
)


def _values(rng, n=6, c=3, t=9):
    x = rng.normal(size=(n, c, t)) * rng.uniform(0.5, 5, size=(1, c, 1)) + rng.normal(
        size=(1, c, 1)
    )
    x[1, :, 6:] = np.nan  # padding
    x[2, 1, 3] = np.nan  # a missing value inside
    return x


def _stats_by_loop(x):
    means, stds = [], []
    for ch in range(x.shape[1]):
        seen = [float(v) for v in x[:, ch].ravel() if not np.isnan(v)]
        m = sum(seen) / len(seen)
        means.append(m)
        stds.append((sum((v - m) ** 2 for v in seen) / len(seen)) ** 0.5)
    return np.array(means), np.array(stds)


def test_channel_stats_match_a_loop():
    x = _values(np.random.default_rng(0))
    stats = fit_channel_stats(x)
    mean, std = _stats_by_loop(x)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, std, rtol=1e-12)
    out = apply_channel_stats(x, stats)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out), np.isnan(x))
    np.testing.assert_allclose(out[0, 2, 4], (x[0, 2, 4] - mean[2]) / std[2], rtol=1e-6)


def test_dataset_statistics_come_from_train_series_only():
    rng = np.random.default_rng(1)
    x = _values(rng, n=10)
    train = np.arange(10) < 6
    x[~train] = x[~train] * 50 + 100  # a test distribution far from the training one
    out, stats = normalise(x, train, "dataset")
    mean, std = _stats_by_loop(x[train])
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, std, rtol=1e-12)
    leaked, _ = _stats_by_loop(x)
    assert not np.allclose(leaked, mean, atol=1.0)  # the check above could tell a leak
    changed = x.copy()
    changed[~train] = rng.normal(size=changed[~train].shape) * 1e3
    out2, stats2 = normalise(changed, train, "dataset")
    np.testing.assert_array_equal(stats2.mean, stats.mean)
    np.testing.assert_array_equal(out2[train], out[train])


def test_series_znormalisation_matches_a_loop():
    x = _values(np.random.default_rng(2))
    x[3, 0] = 4.0  # a constant channel is only centred
    out = znormalise_series(x)
    for i in range(x.shape[0]):
        for ch in range(x.shape[1]):
            seen = x[i, ch][~np.isnan(x[i, ch])]
            mean, std = seen.mean(), seen.std()
            want = (x[i, ch] - mean) / (std if std > 0 else 1.0)
            np.testing.assert_allclose(out[i, ch], want, rtol=1e-5, atol=1e-6)
    assert np.isnan(out[1, :, 6:]).all()
    with pytest.raises(ValueError, match="normalisation"):
        normalise(x, np.ones(6, bool), "minmax")  # type: ignore[arg-type]


def test_prepared_statistics_ignore_the_test_file(tmp_path, write_tsv):
    rng = np.random.default_rng(3)
    train = rng.normal(size=(8, 12)) * 2 + 5
    write_tsv(tmp_path / "D_TRAIN.tsv", [1, 2] * 4, train)
    write_tsv(tmp_path / "D_TEST.tsv", [1, 2, 1], rng.normal(size=(3, 12)) * 100 - 40)
    modality = TimeSeriesModality()
    records = modality.scan(tmp_path)
    assert [r.split for r in records] == ["train"] * 8 + ["test"] * 3
    prepared = modality.prepare(records, tmp_path / "cache")
    assert prepared.fitted_on == "train"
    np.testing.assert_allclose(prepared.stats["mean"], [train.mean()], rtol=1e-9)
    np.testing.assert_allclose(prepared.stats["std"], [train.std()], rtol=1e-9)
    got = np.asarray(prepared.values[:8, 0], dtype=np.float64)
    np.testing.assert_allclose(got, (train - train.mean()) / train.std(), rtol=1e-5, atol=1e-5)
