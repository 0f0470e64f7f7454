"""Keyed counter-based randomness: hash correctness, distribution, independence, and
independence from batch layout."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.platform.augment.keyed import (
    _mix32,
    _mul32,
    keyed_normal,
    keyed_range,
    keyed_uniform,
    sample_keys,
)

N = 20_000


def _fmix32_reference(h: int) -> int:
    """murmur3 fmix32 in exact Python integers."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def _ks_uniform(values: torch.Tensor) -> float:
    v = values.double().sort().values
    n = v.numel()
    grid = torch.arange(1, n + 1, dtype=torch.float64) / n
    return float(torch.maximum(grid - v, v - (grid - 1.0 / n)).abs().max())


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


@pytest.fixture(scope="module")
def keys() -> torch.Tensor:
    return sample_keys(torch.arange(N), seed=3, epoch=1, view=0)


def test_split_multiplication_matches_exact_integers() -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 2**32, (500,), generator=gen, dtype=torch.int64)
    values[:4] = torch.tensor([0, 1, 2**32 - 1, 2**31])
    for constant in (0x85EBCA6B, 0xC2B2AE35, 0x9E3779B1):
        got = _mul32(values, constant).tolist()
        assert got == [(v * constant) & 0xFFFFFFFF for v in values.tolist()]
    assert _mix32(values).tolist() == [_fmix32_reference(v) for v in values.tolist()]


def test_keys_are_63_bit_distinct_and_take_any_int64_index() -> None:
    index = torch.tensor([0, 1, -1, 2**40, -(2**62), 2**63 - 1])
    k = sample_keys(index, seed=0, epoch=0, view=0)
    assert k.dtype == torch.int64 and bool((k >= 0).all())
    assert k.unique().numel() == index.numel()
    many = sample_keys(torch.arange(N), 0, 0, 0)
    assert many.unique().numel() == N


@pytest.mark.parametrize("field", ["seed", "epoch", "view"])
def test_each_key_input_changes_the_key(field: str) -> None:
    base = {"seed": 0, "epoch": 0, "view": 0}
    changed = dict(base, **{field: 1})
    index = torch.arange(100)
    a, b = sample_keys(index, **base), sample_keys(index, **changed)
    assert bool((a != b).all())


def test_uniform_moments_and_ks(keys: torch.Tensor) -> None:
    u = keyed_uniform(keys, 8, stream=1)
    assert u.dtype == torch.float32 and u.shape == (N, 8)
    assert bool(((u >= 0) & (u < 1)).all())
    flat = u.flatten()
    n = flat.numel()
    assert abs(float(flat.mean()) - 0.5) < 4 * math.sqrt(1 / 12 / n)
    assert abs(float(flat.var()) - 1 / 12) < 0.002
    # Kolmogorov-Smirnov at the 0.1 % level is 1.95 / sqrt(n).
    assert _ks_uniform(flat) < 1.95 / math.sqrt(n)
    counts = torch.histc(flat, bins=20, min=0.0, max=1.0)
    expected = n / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45.3  # chi-square, 19 dof, 0.1 % level


def test_normal_moments_and_ks(keys: torch.Tensor) -> None:
    z = keyed_normal(keys, 4, stream=2).double().flatten()
    n = z.numel()
    assert abs(float(z.mean())) < 4 / math.sqrt(n)
    assert abs(float(z.std()) - 1.0) < 0.02
    assert abs(float((z**3).mean())) < 0.1
    assert abs(float((z**4).mean()) - 3.0) < 0.2
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    assert _ks_uniform(cdf) < 1.95 / math.sqrt(n)


def test_streams_keys_and_counters_are_uncorrelated(keys: torch.Tensor) -> None:
    bound = 4 / math.sqrt(N)
    u = keyed_uniform(keys, 2, stream=1)
    other_stream = keyed_uniform(keys, 1, stream=2)[:, 0]
    assert abs(_corr(u[:, 0], u[:, 1])) < bound  # counters
    assert abs(_corr(u[:, 0], other_stream)) < bound  # streams
    assert abs(_corr(u[:-1, 0], u[1:, 0])) < bound  # neighbouring indices
    next_view = keyed_uniform(sample_keys(torch.arange(N), 3, 1, 1), 1, stream=1)[:, 0]
    assert abs(_corr(u[:, 0], next_view)) < bound  # views
    normal = keyed_normal(keys, 1, stream=1)[:, 0]
    assert abs(_corr(u[:, 0], normal)) < bound  # uniform vs normal of the same stream


def test_deterministic_and_prefix_stable(keys: torch.Tensor) -> None:
    small = keys[:64]
    assert torch.equal(keyed_uniform(small, 5, stream=9), keyed_uniform(small, 5, stream=9))
    assert torch.equal(keyed_uniform(small, 3, stream=9), keyed_uniform(small, 7, stream=9)[:, :3])
    assert torch.equal(keyed_normal(small, 2, stream=9), keyed_normal(small, 6, stream=9)[:, :2])
    r = keyed_range(small, 4, -2.0, 3.0, stream=4)
    assert bool(((r >= -2.0) & (r < 3.0)).all())


def test_values_do_not_depend_on_batch_order_or_partition() -> None:
    index = torch.arange(100, 132)
    full_u = keyed_uniform(sample_keys(index, 5, 2, 1), 6, stream=3)
    full_n = keyed_normal(sample_keys(index, 5, 2, 1), 6, stream=3)
    perm = torch.randperm(index.numel(), generator=torch.Generator().manual_seed(1))
    shuffled = keyed_uniform(sample_keys(index[perm], 5, 2, 1), 6, stream=3)
    assert torch.equal(shuffled, full_u[perm])
    # As if split over 3 ranks of uneven size.
    parts = [index[:5], index[5:20], index[20:]]
    assert torch.equal(
        torch.cat([keyed_uniform(sample_keys(p, 5, 2, 1), 6, stream=3) for p in parts]), full_u
    )
    assert torch.equal(
        torch.cat([keyed_normal(sample_keys(p, 5, 2, 1), 6, stream=3) for p in parts]), full_n
    )


def test_bad_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="int64"):
        keyed_uniform(torch.zeros(3), 2, stream=0)
    with pytest.raises(ValueError, match="1-D"):
        sample_keys(torch.zeros(2, 2, dtype=torch.int64), 0, 0, 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_draws_equal_cpu_draws() -> None:
    keys = sample_keys(torch.arange(1000), 1, 2, 0)
    cuda_keys = sample_keys(torch.arange(1000, device="cuda"), 1, 2, 0)
    assert torch.equal(cuda_keys.cpu(), keys)
    assert torch.equal(
        keyed_uniform(cuda_keys, 16, stream=5).cpu(), keyed_uniform(keys, 16, stream=5)
    )
    torch.testing.assert_close(
        keyed_normal(cuda_keys, 16, stream=5).cpu(), keyed_normal(keys, 16, stream=5)
    )
