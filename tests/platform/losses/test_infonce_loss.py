"""InfoNCE / NT-Xent and DCL against slow float64 loop references: values, gradients,
random masks, stability, bf16, and rank-partitioned keys equal to the global loss."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.platform.losses import dcl, info_nce, masked_info_nce, two_view_masks

SIZES = [1, 3, 8]
TEMPERATURES = [0.05, 0.1, 0.5]


def _log_sum_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def reference_masked(
    sim: torch.Tensor, positive: torch.Tensor, eligible: torch.Tensor, decoupled: bool
) -> float:
    """Loop over every (anchor, positive) pair, in Python floats."""
    s = sim.double().tolist()
    losses = []
    for a in range(sim.shape[0]):
        negatives = [s[a][n] for n in range(sim.shape[1]) if eligible[a, n] and not positive[a, n]]
        for p in range(sim.shape[1]):
            if not positive[a, p]:
                continue
            terms = negatives if decoupled else [s[a][p], *negatives]
            if not terms:
                continue
            losses.append(-s[a][p] + _log_sum_exp(terms))
    return sum(losses) / len(losses) if losses else 0.0


def reference_nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, tau: float, decoupled: bool
) -> torch.Tensor:
    """SimCLR's NT-Xent written out anchor by anchor with torch scalars (keeps autograd)."""
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n = z.shape[0]
    b = n // 2
    total = []
    for i in range(n):
        j = (i + b) % n
        others = [k for k in range(n) if k != i and not (decoupled and k == j)]
        if not others:
            continue
        denominator = sum(torch.exp(torch.dot(z[i], z[k]) / tau) for k in others)
        total.append(-torch.dot(z[i], z[j]) / tau + torch.log(denominator))
    if not total:
        return torch.zeros((), dtype=torch.float64)
    return torch.stack(total).mean()


def _random_problem(n: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sim = torch.randn(n, m, generator=gen, dtype=torch.float64) * 3
    positive = torch.rand(n, m, generator=gen) < 0.2
    positive[0] = False  # at least one anchor without a positive
    eligible = torch.rand(n, m, generator=gen) < 0.7
    if n > 1:
        eligible[-1] = False  # an anchor without negatives
        positive[-1, 0] = True
    return sim, positive, eligible


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (8, 16), (12, 7)])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_info_nce_matches_loops(shape: tuple[int, int], decoupled: bool, seed: int) -> None:
    sim, positive, eligible = _random_problem(*shape, seed)
    got = masked_info_nce(sim, positive, eligible, exclude_positive_from_denominator=decoupled)
    assert got.dtype == torch.float64 and got.ndim == 0
    assert float(got) == pytest.approx(
        reference_masked(sim, positive, eligible, decoupled), abs=1e-10
    )


def test_masked_info_nce_gradcheck() -> None:
    for seed in range(3):
        sim, positive, eligible = _random_problem(5, 6, seed)
        sim.requires_grad_(True)
        for decoupled in (False, True):
            assert torch.autograd.gradcheck(
                lambda s, d=decoupled, p=positive, e=eligible: masked_info_nce(
                    s, p, e, exclude_positive_from_denominator=d
                ),
                (sim,),
            )


def test_masked_info_nce_is_stable_and_ignores_unused_entries() -> None:
    sim = torch.tensor([[1000.0, 990.0, float("inf"), -1000.0], [float("nan"), 5.0, 0.0, 800.0]])
    positive = torch.tensor([[True, False, False, False], [False, True, False, False]])
    eligible = torch.tensor([[False, True, False, True], [False, False, True, True]])
    sim.requires_grad_(True)
    loss = masked_info_nce(sim, positive, eligible)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(sim.grad).all()
    assert float(sim.grad[0, 2]) == 0.0 and float(sim.grad[1, 0]) == 0.0
    finite = sim.detach().nan_to_num(0.0, posinf=0.0)
    assert float(loss.detach()) == pytest.approx(
        reference_masked(finite, positive, eligible, False), abs=1e-3
    )


def test_masked_info_nce_without_pairs_is_zero_with_a_graph() -> None:
    sim = torch.randn(3, 3, requires_grad=True)
    none = torch.zeros(3, 3, dtype=torch.bool)
    loss = masked_info_nce(sim, none, ~none)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(sim.grad, torch.zeros(3, 3))


def test_masked_info_nce_bf16_computes_in_float32() -> None:
    sim, positive, eligible = _random_problem(8, 16, 4)
    low = sim.to(torch.bfloat16)
    got = masked_info_nce(low, positive, eligible)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(
        reference_masked(low.double(), positive, eligible, False), abs=1e-5
    )


def test_masked_info_nce_rejects_bad_masks() -> None:
    sim = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="positive"):
        masked_info_nce(
            sim, torch.zeros(2, 2, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="eligible"):
        masked_info_nce(sim, torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 3))


@pytest.mark.parametrize("batch", SIZES)
@pytest.mark.parametrize("tau", TEMPERATURES)
@pytest.mark.parametrize("decoupled", [False, True])
def test_two_view_losses_match_nt_xent_reference(batch: int, tau: float, decoupled: bool) -> None:
    gen = torch.Generator().manual_seed(batch * 100 + int(tau * 100))
    z1 = torch.randn(batch, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    z2 = (
        z1.detach() + 0.5 * torch.randn(batch, 6, generator=gen, dtype=torch.float64)
    ).requires_grad_(True)
    loss_fn = dcl if decoupled else info_nce
    got = loss_fn(z1, z2, tau)
    expected = reference_nt_xent(z1, z2, tau, decoupled)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    if batch > 1:
        g1, g2 = torch.autograd.grad(got, (z1, z2))
        e1, e2 = torch.autograd.grad(expected, (z1, z2))
        torch.testing.assert_close(g1, e1, atol=1e-9, rtol=1e-7)
        torch.testing.assert_close(g2, e2, atol=1e-9, rtol=1e-7)


def test_two_view_masks_layout() -> None:
    positive, eligible = two_view_masks(batch_size=2, keys_per_view=4, offset=2)
    assert positive.shape == (4, 8)
    assert positive.nonzero().tolist() == [[0, 6], [1, 7], [2, 2], [3, 3]]
    assert (~eligible).nonzero().tolist() == [[0, 2], [1, 3], [2, 6], [3, 7]]
    with pytest.raises(ValueError, match="offset"):
        two_view_masks(batch_size=3, keys_per_view=4, offset=2)


@pytest.mark.parametrize("decoupled", [False, True])
def test_rank_partitioned_loss_and_gradient_equal_the_global_ones(decoupled: bool) -> None:
    """Each 'rank' contrasts its 4 anchors with all 8 gathered keys at its offset; the mean
    over ranks must equal the loss of one process holding all 8 samples."""
    gen = torch.Generator().manual_seed(5)
    z1 = torch.randn(8, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(8, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    loss_fn = dcl if decoupled else info_nce
    whole = loss_fn(z1, z2, 0.1)
    parts = [
        loss_fn(
            z1[r * 4 : (r + 1) * 4], z2[r * 4 : (r + 1) * 4], 0.1, gathered=(z1, z2), offset=r * 4
        )
        for r in range(2)
    ]
    split = torch.stack(parts).mean()
    torch.testing.assert_close(split, whole, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        torch.autograd.grad(split, (z1, z2)),
        torch.autograd.grad(whole, (z1, z2)),
        atol=1e-12,
        rtol=0,
    )


def test_two_view_losses_reject_bad_arguments() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(z, z, 0.0)
    with pytest.raises(ValueError, match="equal shapes"):
        info_nce(z, torch.randn(3, 3))
    with pytest.raises(ValueError, match="gathered"):
        dcl(z, z, 0.1, gathered=(torch.randn(8, 3), torch.randn(8, 4)))


def test_loss_prefers_aligned_views() -> None:
    z = torch.randn(8, 16)
    assert float(info_nce(z, z, 0.1)) < float(info_nce(z, torch.randn(8, 16), 0.1))
    assert float(dcl(z, z, 0.1)) < float(dcl(z, torch.randn(8, 16), 0.1))
