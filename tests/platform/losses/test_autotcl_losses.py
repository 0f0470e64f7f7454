"""AutoTCL's losses against slow loop references (float64): multi-kernel MMD, keep-probability
sparsity, temporal smoothness (with padding masks), the entropy floor and the per-channel keep
floor, cross-view InfoNCE, local-window InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.platform.losses.autotcl import (
    binary_entropy,
    channel_keep_floor,
    cross_view_info_nce,
    gaussian_mmd,
    keep_entropy_floor,
    keep_sparsity,
    local_window_info_nce,
    temporal_smoothness,
)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _mmd_loops(s: torch.Tensor, t: torch.Tensor, mul: float, num: int, h: float | None) -> float:
    points = [row for row in s] + [row for row in t]
    n = len(points)

    def sq(a: torch.Tensor, b: torch.Tensor) -> float:
        return sum(float(a[k] - b[k]) ** 2 for k in range(a.shape[0]))

    if h is None:
        h = sum(sq(points[i], points[j]) for i in range(n) for j in range(n) if i != j) / (
            n * n - n
        )

    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        d = sq(a, b)
        return sum(math.exp(-d / (h * mul ** (i - num // 2))) for i in range(num))

    def mean_k(xs: torch.Tensor, ys: torch.Tensor) -> float:
        return sum(k(a, b) for a in xs for b in ys) / (len(xs) * len(ys))

    return mean_k(s, s) + mean_k(t, t) - 2 * mean_k(s, t)


@pytest.mark.parametrize(
    ("n", "m", "mul", "num", "h"),
    [(6, 6, 2.0, 5, None), (5, 7, 2.0, 5, None), (4, 4, 3.0, 2, None), (6, 5, 2.0, 3, 1.7)],
)
def test_gaussian_mmd_matches_loops(n: int, m: int, mul: float, num: int, h: float | None) -> None:
    s, t = _randn(n, 3, seed=n), _randn(m, 3, seed=m + 10) + 0.5
    got = gaussian_mmd(s, t, kernel_mul=mul, kernel_num=num, bandwidth=h)
    assert float(got) == pytest.approx(_mmd_loops(s, t, mul, num, h), rel=1e-10)


def test_gaussian_mmd_is_zero_for_equal_samples_and_grows_with_shift() -> None:
    s = _randn(8, 4)
    assert float(gaussian_mmd(s, s)) == pytest.approx(0.0, abs=1e-12)
    near, far = gaussian_mmd(s, s + 0.1), gaussian_mmd(s, s + 2.0)
    assert 0 < float(near) < float(far)
    grad_input = s.clone().requires_grad_(True)
    gaussian_mmd(grad_input, s + 0.3).backward()
    assert grad_input.grad is not None and torch.isfinite(grad_input.grad).all()


def test_keep_sparsity_matches_loops_with_and_without_padding() -> None:
    p = torch.rand(3, 2, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mean_all = sum(float(v) for v in p.flatten()) / p.numel()
    assert float(keep_sparsity(p, 0.4)) == pytest.approx(max(mean_all - 0.4, 0.0))
    assert float(keep_sparsity(p, 0.99)) == 0.0
    steps = torch.ones(3, 7, dtype=torch.bool)
    steps[0, 4:] = False
    steps[2, 6:] = False
    kept = [float(p[b, c, t]) for b in range(3) for c in range(2) for t in range(7) if steps[b, t]]
    assert float(keep_sparsity(p, 0.1, steps)) == pytest.approx(sum(kept) / len(kept) - 0.1)


def test_temporal_smoothness_matches_loops_with_and_without_padding() -> None:
    p = torch.rand(2, 3, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    steps = torch.ones(2, 6, dtype=torch.bool)
    steps[1, 3:] = False
    for mask in (None, steps):
        diffs = [
            abs(float(p[b, c, t + 1] - p[b, c, t]))
            for b in range(2)
            for c in range(3)
            for t in range(5)
            if mask is None or (mask[b, t] and mask[b, t + 1])
        ]
        assert float(temporal_smoothness(p, mask)) == pytest.approx(sum(diffs) / len(diffs))
    assert float(temporal_smoothness(torch.ones(2, 3, 6))) == 0.0
    assert float(temporal_smoothness(torch.rand(2, 3, 1))) == 0.0


def _entropy_bits(q: float) -> float:
    q = min(max(q, 1e-6), 1 - 1e-6)
    return -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def _saturating_p(b: int, c: int, t: int, seed: int) -> torch.Tensor:
    """Keep probabilities from logits of spread 4: many near 0 or 1, some exactly there."""
    logits = 4 * torch.randn(b, c, t, generator=torch.Generator().manual_seed(seed))
    p = torch.sigmoid(logits.double())
    p[0, 0, :2] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    return p


def _padding(b: int, t: int) -> torch.Tensor:
    steps = torch.ones(b, t, dtype=torch.bool)
    steps[0, t // 2 :] = False
    steps[-1, t - 1 :] = False
    return steps


@pytest.mark.parametrize(("b", "c", "t"), [(3, 2, 7), (1, 1, 5), (4, 5, 3)])
@pytest.mark.parametrize("floor", [0.0, 0.3, 0.8, 1.0])
def test_keep_entropy_floor_matches_loops(b: int, c: int, t: int, floor: float) -> None:
    p = _saturating_p(b, c, t, seed=b * 10 + c)
    for mask in (None, _padding(b, t)):
        cells = [
            float(p[i, j, k])
            for i in range(b)
            for j in range(c)
            for k in range(t)
            if mask is None or mask[i, k]
        ]
        mean_entropy = sum(_entropy_bits(q) for q in cells) / len(cells)
        got = keep_entropy_floor(p, floor, mask)
        assert float(got) == pytest.approx(max(floor - mean_entropy, 0.0), abs=1e-12)
    # Fully undecided p meets any floor; a fixed mask pays (almost) the whole floor.
    assert float(keep_entropy_floor(torch.full((2, 3, 4), 0.5), 1.0)) == pytest.approx(0, abs=1e-6)
    fixed = (torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    assert float(keep_entropy_floor(fixed, 0.7)) == pytest.approx(0.7, abs=1e-3)


def test_binary_entropy_gradient_stays_finite_and_raises_p_towards_one_half() -> None:
    p = torch.tensor([0.0, 0.02, 0.3, 0.5, 0.9, 1.0], requires_grad=True)
    expected = [_entropy_bits(float(q)) for q in p.detach()]
    assert binary_entropy(p.detach().double()).tolist() == pytest.approx(expected, abs=1e-12)
    binary_entropy(p).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    assert p.grad[1] > 0 and p.grad[2] > 0 and p.grad[4] < 0
    assert float(p.grad[3]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="floor is in bits"):
        keep_entropy_floor(torch.rand(1, 1, 3), 1.5)


@pytest.mark.parametrize(("b", "c", "t"), [(3, 2, 7), (1, 1, 5), (4, 5, 3)])
@pytest.mark.parametrize("minimum", [0.0, 0.2, 0.5])
def test_channel_keep_floor_matches_loops(b: int, c: int, t: int, minimum: float) -> None:
    p = _saturating_p(b, c, t, seed=b + 7 * c)
    p[:, 0] = 0.0  # a channel dropped from every view pays the whole minimum
    for mask in (None, _padding(b, t)):
        shortfall = 0.0
        for j in range(c):
            kept = [
                float(p[i, j, k]) for i in range(b) for k in range(t) if mask is None or mask[i, k]
            ]
            shortfall += max(minimum - sum(kept) / len(kept), 0.0)
        got = channel_keep_floor(p, minimum, mask)
        assert float(got) == pytest.approx(shortfall, abs=1e-12)
        assert float(got) >= minimum - 1e-12
    with pytest.raises(ValueError, match="minimum must be in"):
        channel_keep_floor(p, -0.1)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_cross_view_info_nce_matches_loops(tau: float) -> None:
    a, c = _randn(5, 4, seed=3), _randn(5, 4, seed=4)
    an = [row / row.norm() for row in a]
    cn = [row / row.norm() for row in c]
    total = 0.0
    for i in range(5):
        scores = [float(an[i] @ cn[j]) / tau for j in range(5)]
        total += -scores[i] + math.log(sum(math.exp(s) for s in scores))
    assert float(cross_view_info_nce(a, c, tau)) == pytest.approx(total / 5, rel=1e-10)


def _local_loops(seq: torch.Tensor, k: int, tau: float, start: int) -> float:
    b, d, t = seq.shape
    w = t // k
    total, count = 0.0, 0
    for s in range(b):
        unit = [seq[s, :, i] / seq[s, :, i].norm() for i in range(t)]
        windows = []
        for j in range(k):
            steps = unit[start + j * w : start + (j + 1) * w]
            pooled = [max(float(u[c]) for u in steps) for c in range(d)]
            windows.append(torch.tensor(pooled, dtype=torch.float64))
        for i in range(k):
            negatives = [
                math.exp(float(windows[i] @ windows[j]) / tau) for j in range(k) if abs(i - j) >= 2
            ]
            for j in (i - 1, i + 1):
                if 0 <= j < k:
                    pos = float(windows[i] @ windows[j]) / tau
                    total += -pos + math.log(math.exp(pos) + sum(negatives))
                    count += 1
    return total / count


@pytest.mark.parametrize(
    ("t", "k", "tau", "start"), [(40, 8, 1.0, 0), (43, 5, 0.5, 3), (12, 4, 1.0, 0)]
)
def test_local_window_info_nce_matches_loops(t: int, k: int, tau: float, start: int) -> None:
    seq = _randn(3, 4, t, seed=t)
    got = local_window_info_nce(seq, num_windows=k, temperature=tau, start=start)
    assert float(got) == pytest.approx(_local_loops(seq, k, tau, start), rel=1e-10)


def test_local_window_info_nce_is_zero_when_too_short() -> None:
    seq = torch.randn(2, 4, 10, requires_grad=True)
    loss = local_window_info_nce(seq, num_windows=16)
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="start"):
        local_window_info_nce(torch.randn(2, 4, 40), num_windows=8, start=1)
