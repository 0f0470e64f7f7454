"""TS2Vec's hierarchical contrastive loss against a slow loop reference (float64), including
odd lengths, alpha and temporal_unit; a closed form on zero inputs; gradients; the blockwise
form for long crops; errors."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.platform.losses import hierarchical
from medssl.platform.losses.hierarchical import (
    hierarchical_contrastive_loss,
    instance_contrastive_loss,
    paired_contrast,
    temporal_contrastive_loss,
)


def _pair_loss_loops(rows: list[torch.Tensor]) -> float:
    """Mean over anchors of -log softmax (over all other rows) at the other view's row."""
    n = len(rows)
    half = n // 2
    total = 0.0
    for i in range(n):
        partner = (i + half) % n
        scores = [float(rows[i] @ rows[j]) for j in range(n) if j != i]
        total += -float(rows[i] @ rows[partner]) + math.log(sum(math.exp(s) for s in scores))
    return total / n


def _instance_loops(z1: torch.Tensor, z2: torch.Tensor) -> float:
    b, t, _ = z1.shape
    if b == 1:
        return 0.0
    per_step = [
        _pair_loss_loops([z1[i, s] for i in range(b)] + [z2[i, s] for i in range(b)])
        for s in range(t)
    ]
    return sum(per_step) / t


def _temporal_loops(z1: torch.Tensor, z2: torch.Tensor) -> float:
    b, t, _ = z1.shape
    if t == 1:
        return 0.0
    per_series = [
        _pair_loss_loops([z1[i, s] for s in range(t)] + [z2[i, s] for s in range(t)])
        for i in range(b)
    ]
    return sum(per_series) / b


def _pool_loops(z: torch.Tensor) -> torch.Tensor:
    b, t, d = z.shape
    out = torch.empty(b, t // 2, d, dtype=z.dtype)
    for i in range(b):
        for s in range(t // 2):
            for k in range(d):
                out[i, s, k] = max(z[i, 2 * s, k], z[i, 2 * s + 1, k])
    return out


def _hierarchical_loops(z1: torch.Tensor, z2: torch.Tensor, alpha: float, unit: int) -> float:
    terms = []
    level = 0
    while z1.shape[1] > 1:
        term = alpha * _instance_loops(z1, z2)
        if level >= unit:
            term += (1 - alpha) * _temporal_loops(z1, z2)
        terms.append(term)
        level += 1
        z1, z2 = _pool_loops(z1), _pool_loops(z2)
    terms.append(alpha * _instance_loops(z1, z2))
    return sum(terms) / len(terms)


@pytest.mark.parametrize(
    ("shape", "alpha", "unit"),
    [
        ((3, 8, 4), 0.5, 0),
        ((2, 7, 3), 0.5, 0),
        ((4, 13, 2), 0.3, 0),
        ((2, 11, 5), 0.5, 1),
        ((3, 5, 3), 0.0, 0),
        ((3, 6, 3), 1.0, 0),
        ((1, 9, 4), 0.5, 0),
        ((3, 1, 4), 0.5, 0),
        ((2, 2, 4), 0.7, 2),
    ],
)
def test_hierarchical_loss_matches_loop_reference(
    shape: tuple[int, int, int], alpha: float, unit: int
) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    z1 = torch.randn(*shape, generator=gen, dtype=torch.float64)
    z2 = torch.randn(*shape, generator=gen, dtype=torch.float64)
    got = hierarchical_contrastive_loss(z1, z2, alpha=alpha, temporal_unit=unit)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(_hierarchical_loops(z1, z2, alpha, unit), rel=1e-10)


def test_single_level_terms_match_loops() -> None:
    gen = torch.Generator().manual_seed(3)
    z1 = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
    z2 = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
    assert float(instance_contrastive_loss(z1, z2)) == pytest.approx(_instance_loops(z1, z2))
    assert float(temporal_contrastive_loss(z1, z2)) == pytest.approx(_temporal_loops(z1, z2))


def test_zero_representations_give_the_closed_form() -> None:
    # All similarities 0: each anchor's loss is log(number of candidates).
    b, t, alpha = 3, 6, 0.5
    z = torch.zeros(b, t, 2, dtype=torch.float64)
    lengths = [6, 3, 1]  # 6 -> 3 -> 1
    levels = [alpha * math.log(2 * b - 1) + (1 - alpha) * math.log(2 * n - 1) for n in lengths[:-1]]
    levels.append(alpha * math.log(2 * b - 1))
    expected = sum(levels) / len(levels)
    assert float(hierarchical_contrastive_loss(z, z, alpha)) == pytest.approx(expected)


def test_float32_input_matches_float64_and_gradients_are_finite() -> None:
    gen = torch.Generator().manual_seed(5)
    z1 = torch.randn(3, 10, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(3, 10, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    exact = hierarchical_contrastive_loss(z1, z2)
    single = hierarchical_contrastive_loss(z1.float(), z2.float())
    assert single.dtype == torch.float32
    assert float(single.detach()) == pytest.approx(float(exact.detach()), rel=1e-5)
    assert torch.autograd.gradcheck(
        lambda a, b: hierarchical_contrastive_loss(a, b), (z1[:, :5], z2[:, :5])
    )


def test_bad_arguments_raise() -> None:
    z = torch.randn(2, 4, 3)
    with pytest.raises(ValueError, match="equal shapes"):
        hierarchical_contrastive_loss(z, torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="alpha"):
        hierarchical_contrastive_loss(z, z, alpha=1.5)
    with pytest.raises(ValueError, match="temporal_unit"):
        hierarchical_contrastive_loss(z, z, temporal_unit=-1)


@pytest.mark.parametrize("block_rows", [1, 3, 7, 16, 40])
def test_blockwise_pairs_equal_the_dense_form_in_value_and_gradient(block_rows: int) -> None:
    """Row blocks recomputed in backward (long crops) give the dense form's loss and
    gradients, also when the block size does not divide the rows or exceeds them."""
    gen = torch.Generator().manual_seed(block_rows)
    z = torch.randn(3, 20, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    dense = paired_contrast(z)
    (dense_grad,) = torch.autograd.grad(dense, z)
    blocked = paired_contrast(z, block_rows=block_rows)
    (blocked_grad,) = torch.autograd.grad(blocked, z)
    assert float(blocked) == pytest.approx(float(dense), rel=1e-12)
    assert torch.allclose(blocked_grad, dense_grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="block_rows"):
        paired_contrast(z, block_rows=0)


def test_long_crops_switch_to_blocks_and_still_match_the_loop_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the dense budget set below these views' similarities, every temporal term runs
    blockwise (as a 10,000-step crop does at the real budget) and the whole loss still
    equals the slow loops; the gradient equals the dense run's."""
    gen = torch.Generator().manual_seed(11)
    z1 = torch.randn(2, 13, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(2, 13, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    dense = hierarchical_contrastive_loss(z1, z2)
    dense_grads = torch.autograd.grad(dense, (z1, z2))
    calls: list[tuple[int, int]] = []
    original = hierarchical._block_pairs

    def spy(z: torch.Tensor, start: int, stop: int, half: int) -> torch.Tensor:
        calls.append((start, stop))
        return original(z, start, stop, half)

    monkeypatch.setattr(hierarchical, "DENSE_BYTES", 2 * 26 * 26 * 8 - 1)
    monkeypatch.setattr(hierarchical, "_block_pairs", spy)
    blocked = hierarchical_contrastive_loss(z1, z2)
    assert calls, "the temporal term of the 13-step level did not run blockwise"
    assert float(blocked) == pytest.approx(_hierarchical_loops(z1, z2, 0.5, 0), rel=1e-10)
    for got, want in zip(torch.autograd.grad(blocked, (z1, z2)), dense_grads, strict=True):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
