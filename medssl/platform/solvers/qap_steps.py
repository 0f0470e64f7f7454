"""The steps of the batched QAP heuristic `solve_qap`: the RRWM relaxation (Cho et al. 2010)
with its Sinkhorn reweighting, IPFP (Leordeanu et al. 2009) and the pairwise-swap search.

Each works on the float64 affinity M = sym(K) + diag(vec(unary)) of a batch of problems and
on R starts per problem at once.
"""

from __future__ import annotations

import torch

from medssl.platform.solvers.lap import linear_assignment


def rrwm(M: torch.Tensor, n: int, *, iterations: int, alpha: float, beta: float) -> torch.Tensor:
    """Reweighted random walk on affinity M (B, N*N, N*N); returns x (B, N*N), sum 1.

    Example:
        >>> x = rrwm(torch.eye(4)[None].double(), 2, iterations=5, alpha=0.2, beta=30.0)
        >>> x.shape
        torch.Size([1, 4])
    """
    tiny = torch.finfo(M.dtype).tiny
    walk = M - M.amin((1, 2), keepdim=True).clamp_max(0.0)
    walk = walk / walk.sum(2).amax(1)[:, None, None].clamp_min(tiny)
    x = torch.full(M.shape[:2], 1.0 / M.shape[1], dtype=M.dtype, device=M.device)
    for _ in range(iterations):
        x = torch.bmm(x[:, None, :], walk)[:, 0]  # walk is symmetric; row form is faster
        x = x / x.sum(1, keepdim=True).clamp_min(tiny)
        inflated = beta * x / x.amax(1, keepdim=True).clamp_min(tiny)
        jump = sinkhorn(inflated.view(-1, n, n)).flatten(1) / n
        x = (1.0 - alpha) * x + alpha * jump
    return x


def sinkhorn(log_scores: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """Bistochastic normalisation of exp(log_scores) (B, N, N), in the log domain.

    Example:
        >>> sinkhorn(torch.zeros(1, 2, 2))
        tensor([[[0.5000, 0.5000],
                 [0.5000, 0.5000]]])
    """
    log_p = log_scores
    for _ in range(iterations):
        log_p = log_p - torch.logsumexp(log_p, dim=2, keepdim=True)
        log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True)
    return log_p.exp()


def _objective(gradient: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """J = x^T M x from gradient = M x (B, R, N*N) and x's support index (B, R, N)."""
    return gradient.gather(2, index).sum(2)


def _support(perm: torch.Tensor) -> torch.Tensor:
    """(B, R, N) permutations -> (B, R, N) positions i*N + perm[i] of vec(v)'s ones."""
    n = perm.shape[-1]
    return perm + n * torch.arange(n, device=perm.device)


def _one_hot(perm: torch.Tensor) -> torch.Tensor:
    """(B, R, N) permutations -> (B, R, N*N) float64 indicator vectors vec(v)."""
    n = perm.shape[-1]
    x = torch.zeros(*perm.shape[:2], n * n, dtype=torch.float64, device=perm.device)
    return x.scatter_(2, _support(perm), 1.0)


def _times_M(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """M x for each of the R vectors x (B, R, N*N)."""
    return torch.bmm(x, M)  # M is symmetric: (M x_r)^T = x_r^T M


def ipfp(M: torch.Tensor, perm: torch.Tensor, *, iterations: int) -> torch.Tensor:
    """Integer projected fixed point (Leordeanu et al. 2009) from permutations (B, R, N).

    Each step moves x towards b = linear_assignment(M x) by the exact line search of
    x^T M x; the best permutation met (the start included) is returned, so J never drops.

    Example:
        >>> M = torch.eye(4, dtype=torch.float64)[None] * torch.tensor([1.0, 0, 0, 1])
        >>> ipfp(M, torch.tensor([[[1, 0]]]), iterations=2)
        tensor([[[0, 1]]])
    """
    batch, starts, n = perm.shape
    x = _one_hot(perm)
    best_perm, best_value = perm, (x * _times_M(M, x)).sum(2)
    for _ in range(iterations):
        gradient = _times_M(M, x)
        perm = linear_assignment(gradient.view(-1, n, n)).view(batch, starts, n)
        b = _one_hot(perm)
        Mb = _times_M(M, b)
        value = (b * Mb).sum(2)
        better = value > best_value
        best_perm = torch.where(better[:, :, None], perm, best_perm)
        best_value = torch.where(better, value, best_value)
        direction = b - x
        slope = (direction * gradient).sum(2)
        curvature = (direction * (Mb - gradient)).sum(2)
        # J(x + t d) = J(x) + 2 t slope + t^2 curvature, maximised over t in [0, 1].
        concave_step = (-slope / curvature.clamp_max(-1e-300)).clamp(0.0, 1.0)
        step = torch.where(curvature < 0, concave_step, torch.ones_like(slope))
        x = x + step[:, :, None] * direction
    return best_perm


def _pair_terms(
    M: torch.Tensor, perm: torch.Tensor, k: torch.Tensor, rows_l: torch.Tensor
) -> torch.Tensor:
    """Quadratic half Q[k, l] (B, R, |k|, |l|) of the gain of swapping rows k and l.

    With p = (k, perm_k), q = (l, perm_l), r = (k, perm_l), s = (l, perm_k) and
    d = e_r + e_s - e_p - e_q, the gain is 2 d^T M x + d^T M d. Exchanging k and l maps
    r <-> s and p <-> q, so d^T M d = Q + Q^T, with Q holding one of each mirrored pair of
    terms; Q[k, l] depends on perm_k and perm_l only.
    """
    n = perm.shape[-1]
    nn = n * n
    pk, pl = perm.gather(2, k)[..., :, None], perm.gather(2, rows_l)[..., None, :]
    kk, ll = n * k[..., :, None], n * rows_l[..., None, :]
    p, q, r, s = kk + pk, ll + pl, kk + pl, ll + pk
    flat, diagonal = M.flatten(1), M.diagonal(dim1=1, dim2=2)
    shape = (*perm.shape[:2], k.shape[-1], rows_l.shape[-1])

    def m(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return flat.gather(1, (a * nn + b).expand(shape).flatten(1)).view(shape)

    def d(a: torch.Tensor) -> torch.Tensor:
        return diagonal.gather(1, a.flatten(1)).view(a.shape)

    # m(r, s) and m(p, q) are their own mirrors: Q + Q^T counts them twice.
    return d(r) + d(p) + m(r, s) + m(p, q) - 2.0 * (m(r, p) + m(r, q))


def _swap_gains(gradient: torch.Tensor, quadratic: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Gain in J of swapping the columns of rows i and j, for all pairs: (B, R, N, N)."""
    batch, starts, n = perm.shape
    r = (n * torch.arange(n, device=perm.device)[:, None] + perm[:, :, None, :]).flatten(2)
    linear = gradient.gather(2, r).view(batch, starts, n, n)
    linear = linear - gradient.gather(2, _support(perm))[..., None]
    half = 2.0 * linear + quadratic
    return half + half.transpose(2, 3)


_State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # perm, gradient M x, pair terms Q


def _select(mask: torch.Tensor, a: _State, b: _State) -> _State:
    """Per chain (mask (B, R)), state a where True, else b."""
    return tuple(
        torch.where(mask.view(*mask.shape, *[1] * (x.ndim - 2)), x, y) for x, y in zip(a, b, strict=True)
    )  # type: ignore[return-value]


def _swap(M: torch.Tensor, state: _State, i: torch.Tensor, j: torch.Tensor) -> _State:
    """Swap the columns of rows i and j (B, R), i != j: four rows of M update M x, and the
    pair terms of rows and columns i and j are recomputed."""
    perm, gradient, quadratic = state
    n = perm.shape[-1]
    col_i, col_j = perm.gather(2, i[:, :, None]), perm.gather(2, j[:, :, None])
    rows = torch.arange(n, device=perm.device)
    swapped = torch.where(rows == i[:, :, None], col_j, perm)
    swapped = torch.where(rows == j[:, :, None], col_i, swapped)
    problems = torch.arange(M.shape[0], device=M.device)[:, None]

    def row(a: torch.Tensor) -> torch.Tensor:
        return M[problems, a[:, :, 0]]

    i, j = i[:, :, None], j[:, :, None]
    change = row(i * n + col_j) + row(j * n + col_i) - row(i * n + col_i) - row(j * n + col_j)
    moved = torch.cat([i, j], dim=2)
    every = rows.expand(*perm.shape)
    new_rows = _pair_terms(M, swapped, moved, every)
    quadratic = quadratic.scatter(2, moved[..., None].expand_as(new_rows), new_rows)
    new_columns = _pair_terms(M, swapped, every, moved)
    quadratic = quadratic.scatter(3, moved[:, :, None, :].expand_as(new_columns), new_columns)
    return swapped, gradient + change, quadratic


def swap_search(
    M: torch.Tensor, perm: torch.Tensor, *, steps: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterated pairwise-swap local search on J = x^T M x from permutations (B, R, N).

    At each of the fixed ``steps`` every swap gain is known at once (kept up to date by
    each swap); a chain with an improving swap takes the best one; a chain at a local
    optimum (no gain above float64 rounding) records it if it beats its best and restarts
    from its best through two random swaps over two steps (the kick of iterated local
    search). No host sync. Returns the best permutations (B, R, N) and their J (B, R),
    never below the start's.

    Example:
        >>> M = torch.eye(4, dtype=torch.float64)[None] * torch.tensor([1.0, 0, 0, 1])
        >>> swap_search(M, torch.tensor([[[1, 0]]]), steps=2)[0]
        tensor([[[0, 1]]])
    """
    batch, starts, n = perm.shape
    gradient = _times_M(M, _one_hot(perm))
    value = _objective(gradient, _support(perm))
    if n < 2 or steps < 1:
        return perm, value
    every = torch.arange(n, device=perm.device).expand(batch, starts, n)
    state: _State = (perm, gradient, _pair_terms(M, perm, every, every))
    best, best_value = state, value
    kicking = torch.zeros(batch, starts, dtype=torch.bool, device=perm.device)
    upper = torch.ones(n, n, dtype=torch.bool, device=perm.device).triu(1)
    tol = 1e-10 * n * M.abs().amax((1, 2))[:, None]
    for _ in range(steps):
        gains = _swap_gains(state[1], state[2], state[0]).masked_fill(~upper, float("-inf"))
        gain, where = gains.flatten(2).max(2)
        descend = (gain > tol) & ~kicking
        stuck = ~descend & ~kicking
        value = _objective(state[1], _support(state[0]))
        record = stuck & (value > best_value)
        best, best_value = _select(record, state, best), torch.where(record, value, best_value)
        state = _select(stuck, best, state)
        i = torch.randint(0, n, (batch, starts), generator=generator, device=perm.device)
        offset = torch.randint(1, n, (batch, starts), generator=generator, device=perm.device)
        i, j = torch.where(descend, where // n, i), torch.where(descend, where % n, (i + offset) % n)
        state = _swap(M, state, i, j)
        kicking = stuck
    value = _objective(state[1], _support(state[0]))
    better = value > best_value
    return torch.where(better[:, :, None], state[0], best[0]), torch.where(better, value, best_value)
