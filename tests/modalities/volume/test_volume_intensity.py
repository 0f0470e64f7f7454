"""Intensity modes against per-voxel float64 references."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.modalities.volume.intensity import hu_window, minmax, normalise, percentile_window


def _window_reference(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = np.empty(values.size)
    for n, v in enumerate(values.astype(np.float64).ravel()):
        out[n] = 0.0 if v <= lo else 1.0 if v >= hi else (v - lo) / (hi - lo)
    return out.reshape(values.shape)


@pytest.mark.parametrize("window", [(-1000.0, 1000.0), (-125.0, 225.0)])
def test_hu_window(window: tuple[float, float]) -> None:
    hu = np.random.default_rng(0).uniform(-1500, 2500, size=(4, 5, 6)).astype(np.float32)
    out = hu_window(hu, *window)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _window_reference(hu, *window), atol=1e-6)
    with pytest.raises(ValueError, match="lo < hi"):
        hu_window(hu, 10, 10)


def test_percentile_and_minmax() -> None:
    x = np.random.default_rng(1).gamma(2.0, 100.0, size=(10, 10, 10)).astype(np.float32)
    lo, hi = np.percentile(x.astype(np.float64), [2.0, 98.0])
    np.testing.assert_allclose(
        percentile_window(x, 2.0, 98.0), _window_reference(x, lo, hi), atol=1e-5
    )
    np.testing.assert_allclose(minmax(x), _window_reference(x, x.min(), x.max()), atol=1e-6)
    assert np.all(minmax(np.full((2, 2, 2), 5.0)) == 0.0)


def test_normalise_dispatch_channels_and_uint8() -> None:
    x = np.stack([np.linspace(0, 10, 27).reshape(3, 3, 3), np.linspace(-5, 5, 27).reshape(3, 3, 3)])
    out = normalise(x, "minmax")
    assert out.shape == x.shape and out[0].max() == 1.0 and out[1].min() == 0.0
    np.testing.assert_array_equal(normalise(x, "none"), x.astype(np.float32))
    codes = np.array([0.0, 51.0, 255.0])
    np.testing.assert_allclose(normalise(codes, "hu_window", source_dtype="uint8"), [0, 0.2, 1])
    with pytest.raises(ValueError, match="intensity mode"):
        normalise(x, "zscore")
