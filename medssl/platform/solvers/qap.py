"""Batched Lawler QAP for graph matching: RRWM starts, IPFP and pairwise-swap refinement.

maximise J(v) = <unary, v> + vec(v)^T K vec(v) over permutation matrices v, vec row-major.
"""

from __future__ import annotations

import itertools

import torch

from medssl.platform.solvers.lap import (
    check_finite,
    check_square_batch,
    linear_assignment,
    to_permutation_matrix,
)
from medssl.platform.solvers.qap_steps import ipfp, rrwm, swap_search


def check_qap(unary: torch.Tensor, K: torch.Tensor) -> None:
    """Raise ValueError unless unary is (B, N, N) and K a (B, N*N, N*N) of its dtype and device."""
    check_square_batch("unary", unary)
    batch, n = unary.shape[0], unary.shape[1]
    if K.shape != (batch, n * n, n * n):
        raise ValueError(
            f"K must be (B, N*N, N*N) = {(batch, n * n, n * n)} for unary {tuple(unary.shape)}, "
            f"got {tuple(K.shape)}"
        )
    if K.dtype != unary.dtype or K.device != unary.device:
        raise ValueError(
            f"K ({K.dtype}, {K.device}) must share unary's dtype and device "
            f"({unary.dtype}, {unary.device})"
        )


def qap_objective(v: torch.Tensor, unary: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """J(v) = sum_{i,a} unary[b,i,a] v[b,i,a] + vec(v[b])^T K[b] vec(v[b]), one value a problem.

    ``v`` may be any (B, N, N) matrix, not only a permutation; the result has unary's dtype.

    Example:
        >>> unary = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> qap_objective(torch.eye(2)[None], unary, torch.ones(1, 4, 4))
        tensor([6.])
    """
    check_qap(unary, K)
    if v.shape != unary.shape:
        raise ValueError(f"v must have unary's shape {tuple(unary.shape)}, got {tuple(v.shape)}")
    x = v.to(unary.dtype).flatten(1)
    quadratic = (x * torch.bmm(K, x[:, :, None])[:, :, 0]).sum(1)
    return (unary * v.to(unary.dtype)).sum((1, 2)) + quadratic


def affinity(unary: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """M = sym(K) + diag(vec(unary)) in float64: J(v) = vec(v)^T M vec(v) for 0/1 matrices v."""
    work = K.detach().to(torch.float64)
    M = 0.5 * (work + work.transpose(1, 2))
    M.diagonal(dim1=1, dim2=2).add_(unary.detach().to(torch.float64).flatten(1))
    return M


def solve_qap(
    unary: torch.Tensor,
    K: torch.Tensor,
    *,
    iterations: int = 30,
    restarts: int = 8,
    ipfp_iterations: int = 0,
    search_steps: int | None = None,
    alpha: float = 0.2,
    beta: float = 30.0,
    seed: int = 0,
) -> torch.Tensor:
    """Best permutation matrices found for a batch of Lawler QAPs (never differentiated).

    The unary term joins the diagonal of the symmetrised K (M = sym(K) + diag(vec(unary))),
    so J(v) = vec(v)^T M vec(v). Then, all problems and restarts at once:

    1. RRWM (Cho et al. 2010, "Reweighted Random Walks for Graph Matching"): a random walk on
       M shifted to be non-negative (a constant shift leaves the ranking of permutations
       unchanged) and divided by its largest row sum, mixed at every step with a Sinkhorn
       (bistochastic) reweighting of exp(beta * x / max x): x <- (1 - alpha) P x + alpha y.
    2. Starts: the RRWM solution, the gradient M 1 at the uniform matrix, and
       ``restarts - 2`` Gumbel perturbations of the RRWM solution, each rounded to a
       permutation by the exact :func:`linear_assignment`.
    3. Optional IPFP (Leordeanu et al. 2009) from each start, keeping the best permutation.
    4. :func:`swap_search` from each start: best-improvement pairwise swaps, all N(N-1)/2
       gains at once, with a random double-swap kick at each local optimum.

    The best permutation over the restarts is returned; random draws come from a generator
    seeded with ``seed``, so the result is deterministic. Refinement runs in float64.

    Args:
        unary: (B, N, N) floating, finite.
        K: (B, N*N, N*N) of unary's dtype and device; index i*N + a. Only its symmetric part
            matters.
        iterations: RRWM steps.
        restarts: starts refined per problem (>= 1).
        ipfp_iterations: IPFP steps per start before the swap search (0: none).
        search_steps: swap-search steps; None means 8N.
        alpha: weight of the Sinkhorn reweighting jump in RRWM.
        beta: inflation of the reweighting jump.
        seed: seed of the perturbations and kicks.

    Returns:
        (B, N, N) permutation matrices of unary's dtype.

    Example:
        >>> unary = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
        >>> solve_qap(unary, torch.zeros(1, 4, 4))
        tensor([[[0., 1.],
                 [1., 0.]]])
    """
    check_qap(unary, K)
    for name, value in (("iterations", iterations), ("restarts", restarts)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    with torch.no_grad():
        check_finite("unary", unary)
        check_finite("K", K)
        n = unary.shape[1]
        gen = torch.Generator(device=unary.device).manual_seed(seed)
        M = affinity(unary, K)
        # The walk only ranks starts: float32 is enough unless the input is float64.
        walk_dtype = torch.float64 if unary.dtype == torch.float64 else torch.float32
        x = rrwm(M.to(walk_dtype), n, iterations=iterations, alpha=alpha, beta=beta)
        starts = _starts(M, x, n, restarts, gen)
        perm = linear_assignment(starts.flatten(0, 1).view(-1, n, n)).view(*starts.shape[:2], n)
        if ipfp_iterations > 0:
            perm = ipfp(M, perm, iterations=ipfp_iterations)
        steps = 8 * n if search_steps is None else search_steps
        perm, value = swap_search(M, perm, steps=steps, generator=gen)
        best = perm[torch.arange(perm.shape[0], device=perm.device), value.argmax(1)]
        return to_permutation_matrix(best, n).to(unary.dtype)


def refine_qap(
    v: torch.Tensor,
    unary: torch.Tensor,
    K: torch.Tensor,
    *,
    ipfp_iterations: int = 0,
    search_steps: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Improve permutation matrices v (B, N, N) by IPFP then :func:`swap_search`; the result's
    J is never below v's (steps 3 and 4 of :func:`solve_qap`).

    Example:
        >>> unary = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
        >>> refine_qap(torch.eye(2)[None], unary, torch.zeros(1, 4, 4))
        tensor([[[0., 1.],
                 [1., 0.]]])
    """
    check_qap(unary, K)
    if v.shape != unary.shape:
        raise ValueError(f"v must have unary's shape {tuple(unary.shape)}, got {tuple(v.shape)}")
    with torch.no_grad():
        n = unary.shape[1]
        gen = torch.Generator(device=unary.device).manual_seed(seed)
        M = affinity(unary, K)
        perm = v.detach().argmax(2)[:, None]
        if ipfp_iterations > 0:
            perm = ipfp(M, perm, iterations=ipfp_iterations)
        steps = 8 * n if search_steps is None else search_steps
        perm, _ = swap_search(M, perm, steps=steps, generator=gen)
        return to_permutation_matrix(perm[:, 0], n).to(unary.dtype)


def _starts(
    M: torch.Tensor, x: torch.Tensor, n: int, restarts: int, gen: torch.Generator
) -> torch.Tensor:
    """(B, R, N*N) scores to round: RRWM, M 1, and RRWM with Gumbel noise of growing scale."""
    batch = x.shape[0]
    log_x = torch.log(x.to(M.dtype) * (n * n)).clamp_min(-30.0)
    starts = torch.stack([log_x, torch.log1p(M.sum(2) - M.sum(2).amin(1, keepdim=True))], dim=1)
    extra = restarts - 2
    if extra > 0:
        uniform = torch.rand(batch, extra, n * n, generator=gen, dtype=M.dtype, device=M.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-12, 1.0 - 1e-12)))
        scale = torch.logspace(-1, 1, extra, dtype=M.dtype, device=M.device)[:, None]
        starts = torch.cat([starts, log_x[:, None] + scale * gumbel], dim=1)
    return starts[:, :restarts]


def brute_force_qap(unary: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The exact optimum by enumerating all N! permutations (N <= 8): the slow reference.

    Example:
        >>> unary = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
        >>> brute_force_qap(unary, torch.zeros(1, 4, 4))
        tensor([[[0., 1.],
                 [1., 0.]]])
    """
    check_qap(unary, K)
    batch, n = unary.shape[0], unary.shape[1]
    if n > 8:
        raise ValueError(
            f"brute_force_qap enumerates N! permutations and takes N <= 8, got N = {n}"
        )
    device = unary.device
    perms = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long, device=device)
    index = perms + n * torch.arange(n, device=device)
    u = unary.detach().to(torch.float64).flatten(1)
    k = K.detach().to(torch.float64).flatten(1)
    best_value = torch.full((batch,), float("-inf"), dtype=torch.float64, device=device)
    best_index = torch.zeros(batch, dtype=torch.long, device=device)
    chunk = max(1, 2**22 // (batch * n * n))
    for start in range(0, len(perms), chunk):
        idx = index[start : start + chunk]
        pairs = (idx[:, :, None] * (n * n) + idx[:, None, :]).flatten(1)
        values = u[:, idx].sum(2) + k[:, pairs.flatten()].view(batch, len(idx), -1).sum(2)
        value, where = values.max(1)
        better = value > best_value
        best_value = torch.where(better, value, best_value)
        best_index = torch.where(better, where + start, best_index)
    return to_permutation_matrix(perms[best_index], n).to(unary.dtype)
