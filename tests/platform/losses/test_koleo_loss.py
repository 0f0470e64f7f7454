"""KoLeo against a loop reference in float64: values, gradients, duplicates, arguments."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.platform.losses import koleo_loss


def reference_koleo(h: torch.Tensor, eps: float) -> torch.Tensor:
    """-(1/N) sum_i log(min_{j != i} ||h_i - h_j|| + eps) with every distance listed."""
    unit = [row / row.norm() for row in h.double()]
    terms = []
    for i, hi in enumerate(unit):
        distances = [(hi - hj).norm() for j, hj in enumerate(unit) if j != i]
        terms.append(torch.log(min(distances, key=lambda d: float(d.detach())) + eps))
    return -torch.stack(terms).mean()


@pytest.mark.parametrize("n", [2, 3, 8, 17])
@pytest.mark.parametrize("dim", [2, 5, 32])
@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_koleo_matches_loops_with_gradients(n: int, dim: int, eps: float) -> None:
    gen = torch.Generator().manual_seed(n * 31 + dim)
    h = torch.randn(n, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    got = koleo_loss(h, eps)
    expected = reference_koleo(h, eps)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        torch.autograd.grad(got, h)[0], torch.autograd.grad(expected, h)[0], atol=1e-10, rtol=1e-8
    )


def test_koleo_known_value_and_spread_preference() -> None:
    # Orthonormal points: every nearest distance is sqrt(2).
    assert float(koleo_loss(torch.eye(4, dtype=torch.float64), 0.0 + 1e-12)) == pytest.approx(
        -math.log(math.sqrt(2)), abs=1e-9
    )
    assert float(koleo_loss(torch.eye(4))) < float(koleo_loss(torch.eye(4) + 10.0))


def test_koleo_duplicates_are_finite() -> None:
    h = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = koleo_loss(h, eps=1e-4)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(h.grad).all()


def test_koleo_bf16_and_bad_arguments() -> None:
    h = torch.randn(6, 4)
    assert koleo_loss(h.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match="N >= 2"):
        koleo_loss(torch.randn(1, 4))
    with pytest.raises(ValueError, match="eps"):
        koleo_loss(h, eps=0.0)
