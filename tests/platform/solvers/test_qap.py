"""solve_qap against brute-force enumeration on LVM-Med-like graph matching problems."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medssl.platform.solvers import (
    brute_force_qap,
    linear_assignment,
    qap_objective,
    refine_qap,
    solve_qap,
    to_permutation_matrix,
)


def knn_adjacency(z: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N, N) symmetrised kNN graph of the rows of z (B, N, D), no self loops."""
    distance = torch.cdist(z, z)
    distance.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    nearest = distance.topk(k, dim=2, largest=False).indices
    adjacency = torch.zeros(distance.shape, dtype=torch.bool).scatter_(2, nearest, True)
    return adjacency | adjacency.transpose(1, 2)


def lvmmed_like(
    batch: int, n: int, gen: torch.Generator, dtype: torch.dtype = torch.float64, dim: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """unary = 0.8 cos(zs_i, zt_a); K[(i,a),(j,b)] = cos(zs_i - zs_j, zt_a - zt_b) on kNN edges.

    zt is zs plus noise of growing strength over the batch; every fourth problem is pure noise.
    """
    zs = torch.randn(batch, n, dim, generator=gen, dtype=dtype)
    strength = torch.linspace(0.0, 3.0, batch, dtype=dtype)[:, None, None]
    zt = zs + strength * torch.randn(batch, n, dim, generator=gen, dtype=dtype)
    pure = torch.arange(batch) % 4 == 3
    zt[pure] = torch.randn(int(pure.sum()), n, dim, generator=gen, dtype=dtype)
    unary = 0.8 * F.cosine_similarity(zs[:, :, None], zt[:, None, :], dim=-1)
    k = min(5, n - 1)
    edges_s, edges_t = knn_adjacency(zs, k), knn_adjacency(zt, k)
    ds = zs[:, :, None] - zs[:, None, :]
    dt = zt[:, :, None] - zt[:, None, :]
    cos = F.cosine_similarity(ds[:, :, None, :, None], dt[:, None, :, None, :], dim=-1)
    both = edges_s[:, :, None, :, None] & edges_t[:, None, :, None, :]  # (b, i, a, j, b')
    return unary, (cos * both).reshape(batch, n * n, n * n)


def random_qap(batch: int, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    unary = torch.rand(batch, n, n, generator=gen, dtype=torch.float64)
    K = torch.rand(batch, n * n, n * n, generator=gen, dtype=torch.float64)
    return unary, 0.5 * (K + K.transpose(1, 2))


def assert_permutations(v: torch.Tensor) -> None:
    ones = torch.ones(v.shape[:2], dtype=v.dtype)
    assert torch.equal(v.sum(1), ones) and torch.equal(v.sum(2), ones)
    assert bool(((v == 0) | (v == 1)).all())


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_reaches_brute_force_optimum_on_every_problem(n: int) -> None:
    gen = torch.Generator().manual_seed(100 + n)
    unary, K = lvmmed_like(48, n, gen)
    best = qap_objective(brute_force_qap(unary, K), unary, K)
    found = qap_objective(solve_qap(unary, K), unary, K)
    assert bool((found <= best + 1e-9).all())  # brute force is the optimum
    torch.testing.assert_close(found, best, rtol=1e-5, atol=1e-9)


def test_zero_K_is_linear_assignment() -> None:
    gen = torch.Generator().manual_seed(3)
    unary = torch.randn(32, 9, 9, generator=gen, dtype=torch.float64)
    v = solve_qap(unary, torch.zeros(32, 81, 81, dtype=torch.float64))
    exact = to_permutation_matrix(linear_assignment(unary), 9).double()
    torch.testing.assert_close((v * unary).sum((1, 2)), (exact * unary).sum((1, 2)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_outputs_are_permutation_matrices(n: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(n)
    unary, K = lvmmed_like(8, n, gen, dtype) if n > 1 else random_qap(8, 1, gen)
    v = solve_qap(unary.to(dtype), K.to(dtype))
    assert v.shape == (8, n, n) and v.dtype == dtype and not v.requires_grad
    assert_permutations(v)


def test_not_differentiated() -> None:
    unary, K = lvmmed_like(4, 5, torch.Generator().manual_seed(0))
    v = solve_qap(unary.requires_grad_(), K.requires_grad_())
    assert not v.requires_grad


@pytest.mark.parametrize("make", [lvmmed_like, random_qap])
def test_refinement_never_decreases_objective(make) -> None:
    gen = torch.Generator().manual_seed(7)
    unary, K = make(64, 10, gen)
    start = to_permutation_matrix(torch.rand(64, 10, generator=gen).argsort(1), 10).double()
    before = qap_objective(start, unary, K)
    refined = refine_qap(start, unary, K, ipfp_iterations=3)
    assert_permutations(refined)
    after = qap_objective(refined, unary, K)
    assert bool((after >= before - 1e-9 * before.abs().clamp_min(1.0)).all())
    assert bool((after > before).any())
    no_op = refine_qap(refined, unary, K, ipfp_iterations=0, search_steps=0)
    assert torch.equal(no_op, refined)


def test_deterministic() -> None:
    unary, K = random_qap(16, 8, torch.Generator().manual_seed(2))
    assert torch.equal(solve_qap(unary, K), solve_qap(unary, K))


def test_objective_by_hand() -> None:
    unary = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    K = torch.arange(16.0).reshape(1, 4, 4)
    v = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # vec(v) = (0, 1, 1, 0)
    expected = 2.0 + 3.0 + K[0, 1, 1] + K[0, 1, 2] + K[0, 2, 1] + K[0, 2, 2]
    torch.testing.assert_close(qap_objective(v, unary, K), expected.reshape(1))


@pytest.mark.parametrize(
    ("unary", "K", "message"),
    [
        (torch.zeros(2, 3, 4), torch.zeros(2, 12, 12), r"unary must be a \(B, N, N\) batch"),
        (torch.zeros(3, 3), torch.zeros(9, 9), r"unary must be a \(B, N, N\) batch"),
        (torch.zeros(2, 3, 3), torch.zeros(2, 9, 8), r"K must be \(B, N\*N, N\*N\)"),
        (torch.zeros(2, 3, 3), torch.zeros(1, 9, 9), r"K must be \(B, N\*N, N\*N\)"),
        (torch.zeros(1, 2, 2), torch.zeros(1, 4, 4).double(), "must share unary's dtype"),
    ],
)
def test_bad_shapes_one_sentence(unary: torch.Tensor, K: torch.Tensor, message: str) -> None:
    for call in (solve_qap, brute_force_qap):
        with pytest.raises(ValueError, match=message) as error:
            call(unary, K)
        assert "\n" not in str(error.value) and str(error.value).count(". ") == 0


def test_bad_options_and_sizes() -> None:
    unary, K = torch.zeros(1, 2, 2), torch.zeros(1, 4, 4)
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        solve_qap(unary, K, restarts=0)
    with pytest.raises(ValueError, match="N <= 8"):
        brute_force_qap(torch.zeros(1, 9, 9), torch.zeros(1, 81, 81))
    with pytest.raises(ValueError, match="finite"):
        solve_qap(torch.full((1, 2, 2), float("nan")), K)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_objective() -> None:
    unary, K = lvmmed_like(32, 6, torch.Generator().manual_seed(5))
    v = solve_qap(unary.cuda(), K.cuda())
    assert v.device.type == "cuda"
    best = qap_objective(brute_force_qap(unary, K), unary, K)
    torch.testing.assert_close(qap_objective(v.cpu(), unary, K), best, rtol=1e-5, atol=1e-9)
