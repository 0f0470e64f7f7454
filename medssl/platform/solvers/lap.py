"""Exact linear assignment of a whole batch at once: the Hungarian method in torch.

Every problem of a (B, N, N) batch is solved together on the batch's device, without host syncs.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def check_square_batch(name: str, x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a floating (B, N, N) batch with N >= 1 and B >= 1."""
    if x.ndim != 3 or x.shape[1] != x.shape[2] or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be a (B, N, N) batch with B, N >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {x.dtype}")


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ValueError if ``x`` holds inf or nan (one host sync, outside any iteration loop)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite, but it holds inf or nan")


def linear_assignment(score: torch.Tensor) -> torch.Tensor:
    """Exact maximum-score assignment of every (N, N) problem of a batch.

    Returns perm with perm[b, i] the column given to row i, maximising
    sum_i score[b, i, perm[b, i]] (Kuhn 1955; the shortest-augmenting-path form with row and
    column potentials, Jonker & Volgenant 1987). Rows are inserted one at a time; the search
    for row i takes at most i Dijkstra steps, so every loop has a fixed length and finished
    problems are masked: no data-dependent branch and no host sync. The arithmetic runs in
    float64, so the optimum is exact up to float64 rounding; ties are broken arbitrarily.

    Args:
        score: (B, N, N) floating, finite; any sign.

    Returns:
        (B, N) int64 on score's device, each row a permutation of 0..N-1.

    Example:
        >>> score = torch.tensor([[[1.0, 5.0], [4.0, 1.0]]])
        >>> linear_assignment(score)
        tensor([[1, 0]])
    """
    check_square_batch("score", score)
    check_finite("score", score)
    batch, n = score.shape[0], score.shape[1]
    device = score.device
    # Index 0 of rows and columns is the dummy of the textbook algorithm.
    cost = torch.zeros(batch, n + 1, n + 1, dtype=torch.float64, device=device)
    cost[:, 1:, 1:] = -score.detach().to(torch.float64)
    u = torch.zeros(batch, n + 1, dtype=torch.float64, device=device)
    v = torch.zeros_like(u)
    row_of = torch.zeros(batch, n + 1, dtype=torch.long, device=device)  # 0 = column free
    way = torch.zeros_like(row_of)
    rows = torch.arange(batch, device=device)
    for i in range(1, n + 1):
        row_of[:, 0] = i
        j0 = _shortest_path(cost, u, v, row_of, way, rows, steps=i)
        _augment(row_of, way, j0, rows, steps=i)
    perm = torch.empty(batch, n, dtype=torch.long, device=device)
    columns = torch.arange(n, device=device).expand(batch, n)
    return perm.scatter_(1, row_of[:, 1:] - 1, columns)


def _shortest_path(
    cost: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    row_of: torch.Tensor,
    way: torch.Tensor,
    rows: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """Dijkstra from the new row over reduced costs; updates u, v, way in place and returns
    the free column where each problem's path ends."""
    batch, width = row_of.shape
    j0 = torch.zeros(batch, dtype=torch.long, device=cost.device)
    min_reduced = torch.full_like(u, float("inf"))
    used = torch.zeros(batch, width, dtype=torch.bool, device=cost.device)
    active = torch.ones(batch, dtype=torch.bool, device=cost.device)
    inf = torch.tensor(float("inf"), dtype=cost.dtype, device=cost.device)
    for _ in range(steps):
        used[rows, j0] |= active
        i0 = row_of[rows, j0]
        reduced = cost[rows, i0] - u[rows, i0, None] - v
        free = ~used
        better = free & (reduced < min_reduced) & active[:, None]
        min_reduced = torch.where(better, reduced, min_reduced)
        way.copy_(torch.where(better, j0[:, None], way))
        delta, j1 = torch.where(free, min_reduced, inf).min(dim=1)
        delta = torch.where(active, delta, torch.zeros_like(delta))
        u.scatter_add_(1, row_of, torch.where(used, delta[:, None], 0.0))
        v.sub_(torch.where(used, delta[:, None], 0.0))
        min_reduced = torch.where(free, min_reduced - delta[:, None], min_reduced)
        j0 = torch.where(active, j1, j0)
        active = active & (row_of[rows, j0] != 0)
    return j0


def _augment(
    row_of: torch.Tensor, way: torch.Tensor, j0: torch.Tensor, rows: torch.Tensor, steps: int
) -> None:
    """Flip the matching along each problem's path back from column j0 to the dummy."""
    active = torch.ones_like(j0, dtype=torch.bool)
    for _ in range(steps):
        j1 = way[rows, j0]
        row_of[rows, j0] = torch.where(active, row_of[rows, j1], row_of[rows, j0])
        j0 = torch.where(active, j1, j0)
        active = active & (j0 != 0)


def to_permutation_matrix(perm: torch.Tensor, n: int) -> torch.Tensor:
    """(B, N) column indices -> (B, N, N) float32 permutation matrices, v[b, i, perm[b, i]] = 1.

    Example:
        >>> to_permutation_matrix(torch.tensor([[1, 0]]), 2)
        tensor([[[0., 1.],
                 [1., 0.]]])
    """
    if perm.ndim != 2 or perm.shape[1] != n or perm.dtype != torch.long:
        raise ValueError(
            f"perm must be a (B, {n}) int64 tensor, got {perm.dtype} {tuple(perm.shape)}"
        )
    matrix = torch.zeros(perm.shape[0], n, n, device=perm.device)
    return matrix.scatter_(2, perm[:, :, None], 1.0)


def linear_assignment_reference(score: torch.Tensor) -> torch.Tensor:
    """The slow reference: scipy's linear_sum_assignment(maximize=True), one problem at a time.

    Example:
        >>> linear_assignment_reference(torch.tensor([[[1.0, 5.0], [4.0, 1.0]]]))
        tensor([[1, 0]])
    """
    check_square_batch("score", score)
    perms = []
    for problem in score.detach().cpu().double().numpy():
        rows, cols = linear_sum_assignment(problem, maximize=True)
        perms.append(cols[np.argsort(rows)])
    return torch.as_tensor(np.stack(perms), dtype=torch.long, device=score.device)
