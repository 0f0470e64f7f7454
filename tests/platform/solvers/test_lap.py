"""Batched Hungarian against scipy's linear_sum_assignment, one problem at a time."""

from __future__ import annotations

import pytest
import torch

from medssl.platform.solvers import (
    linear_assignment,
    linear_assignment_reference,
    to_permutation_matrix,
)


def assignment_score(score: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    return score.double().gather(2, perm[:, :, None]).sum((1, 2))


def random_scores(kind: str, batch: int, n: int, dtype: torch.dtype, gen: torch.Generator):
    if kind == "normal":
        return torch.randn(batch, n, n, generator=gen, dtype=dtype)
    if kind == "ties":  # integers in a small range: many optimal assignments
        return torch.randint(0, 3, (batch, n, n), generator=gen).to(dtype)
    if kind == "negative":
        return -100.0 * torch.rand(batch, n, n, generator=gen, dtype=dtype)
    return torch.randint(-2, 2, (batch, n, n), generator=gen).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["normal", "ties", "negative", "signed_ties"])
def test_optimal_like_scipy(kind: str, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    for n in range(1, 21):
        score = random_scores(kind, 24, n, dtype, gen)
        perm = linear_assignment(score)
        assert perm.dtype == torch.long and perm.shape == (24, n)
        assert torch.equal(perm.sort(1).values, torch.arange(n).expand(24, n))
        ours = assignment_score(score, perm)
        best = assignment_score(score, linear_assignment_reference(score))
        torch.testing.assert_close(ours, best, rtol=1e-5, atol=1e-6)


def test_permutation_matrix() -> None:
    perm = torch.tensor([[2, 0, 1]])
    v = to_permutation_matrix(perm, 3)
    assert torch.equal(v.argmax(2), perm)
    assert torch.equal(v.sum(1), torch.ones(1, 3)) and torch.equal(v.sum(2), torch.ones(1, 3))


@pytest.mark.parametrize(
    "score",
    [
        torch.zeros(2, 3, 4),
        torch.zeros(3, 3),
        torch.zeros(0, 2, 2),
        torch.zeros(1, 2, 2, dtype=torch.long),
    ],
)
def test_bad_input_one_sentence(score: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="score must be"):
        linear_assignment(score)


def test_non_finite_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        linear_assignment(torch.tensor([[[1.0, float("nan")], [0.0, 1.0]]]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_scipy() -> None:
    gen = torch.Generator().manual_seed(1)
    for n in (1, 5, 16, 20):
        score = torch.randint(0, 4, (64, n, n), generator=gen).float()
        perm = linear_assignment(score.cuda())
        assert perm.device.type == "cuda"
        ours = assignment_score(score, perm.cpu())
        best = assignment_score(score, linear_assignment_reference(score))
        torch.testing.assert_close(ours, best, rtol=1e-5, atol=1e-6)
