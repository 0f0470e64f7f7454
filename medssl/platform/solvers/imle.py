"""Gradients through the QAP solver: implicit maximum-likelihood estimation (IMLE).

The solver is a piecewise-constant map, so its gradient is estimated by a second, perturbed solve.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from medssl.platform.solvers.qap import check_qap, solve_qap

_SOLVER_OPTIONS = frozenset(
    name
    for name, parameter in inspect.signature(solve_qap).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)


def work_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32: half precision cannot rank assignments."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


class IMLEQAP(torch.autograd.Function):
    """solve_qap as an autograd node; see :func:`imle_qap` for the estimator."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        unary: torch.Tensor,
        K: torch.Tensor,
        eps: torch.Tensor,
        lam: float,
        solver_kwargs: dict[str, Any],
    ) -> torch.Tensor:
        work = work_dtype(unary, K)
        perturbed = unary.detach().to(work) + eps.to(work)
        quadratic = K.detach().to(work)
        v = solve_qap(perturbed, quadratic, **solver_kwargs)
        ctx.save_for_backward(perturbed, quadratic, v)
        ctx.lam, ctx.solver_kwargs = lam, solver_kwargs
        ctx.dtypes = (unary.dtype, K.dtype)
        return v.to(unary.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        perturbed, quadratic, v = ctx.saved_tensors
        lam = ctx.lam
        target = perturbed - lam * grad.to(perturbed.dtype)
        v_target = solve_qap(target, quadratic, **ctx.solver_kwargs)
        unary_dtype, k_dtype = ctx.dtypes
        grad_unary = ((v - v_target) / lam).to(unary_dtype) if ctx.needs_input_grad[0] else None
        grad_K = None
        if ctx.needs_input_grad[1]:
            a, b = v.flatten(1), v_target.flatten(1)
            outer = a[:, :, None] * a[:, None, :] - b[:, :, None] * b[:, None, :]
            grad_K = (outer / lam).to(k_dtype)
        return grad_unary, grad_K, None, None, None


def imle_qap(
    unary: torch.Tensor,
    K: torch.Tensor,
    *,
    lam: float = 80.0,
    noise: bool = True,
    noise_scale: float = 1.0,
    generator: torch.Generator | None = None,
    solver_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Permutation matrices maximising a batch of Lawler QAPs, differentiable by IMLE
    (Niepert et al. 2021, "Implicit MLE: Backpropagating Through Discrete Exponential Family
    Distributions"), as LVM-Med trains its graph matching (Nguyen et al. 2023).

    Forward: eps ~ Gumbel(0, 1) * noise_scale (zeros without noise), v = solve_qap(unary + eps, K).
    Backward, with g = dL/dv: v' = solve_qap(unary + eps - lam * g, K), then
        dL/dunary = (v - v') / lam,    dL/dK = (vec(v) vec(v)^T - vec(v') vec(v')^T) / lam.
    That is exactly two batched solves per training step. The solves run in float32 (float64
    if an input is float64); gradients come back in the inputs' dtypes.

    Args:
        unary: (B, N, N) vertex affinities, maximised.
        K: (B, N*N, N*N) edge affinities, index i*N + a; may require grad.
        lam: IMLE step lambda > 0; larger values reach further for the target solution.
        noise: add Gumbel noise to ``unary`` before solving (the perturb-and-MAP sample).
        noise_scale: scale >= 0 of that noise.
        generator: random generator of the noise, on unary's device.
        solver_kwargs: keyword options of :func:`solve_qap` for both solves.

    Returns:
        (B, N, N) permutation matrices of unary's dtype.

    Example:
        >>> unary = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]], requires_grad=True)
        >>> v = imle_qap(unary, torch.zeros(1, 4, 4), lam=1.0, noise=False)
        >>> hamming_loss(v).backward()
        >>> unary.grad
        tensor([[[-1.,  1.],
                 [ 1., -1.]]])
    """
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    if not noise_scale >= 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
    options = dict(solver_kwargs or {})
    unknown = sorted(set(options) - _SOLVER_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown solver option(s) {unknown}; solve_qap takes {sorted(_SOLVER_OPTIONS)}"
        )
    work = work_dtype(unary, K)
    check_qap(unary.detach().to(work), K.detach().to(work))
    if noise and noise_scale > 0:
        uniform = torch.rand(
            unary.shape, generator=generator, dtype=work, device=unary.device
        ).clamp(1e-10, 1.0 - 1e-10)
        eps = -torch.log(-torch.log(uniform)) * noise_scale
    else:
        eps = torch.zeros(unary.shape, dtype=work, device=unary.device)
    return IMLEQAP.apply(unary, K, eps, float(lam), options)


def hamming_loss(v: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Hamming distance between assignments and targets, LVM-Med's matching loss.

        L = mean_b sum_{i,a} v[b,i,a] (1 - t[b,i,a]) + t[b,i,a] (1 - v[b,i,a]),

    with t the identity when ``target`` is None (image i of one view is image i of the other).
    For permutation matrices it counts the mismatched entries, 0..2N per problem.

    Args:
        v: (B, N, N) assignments, typically from :func:`imle_qap`.
        target: (B, N, N) or (N, N) target assignments; default the identity.

    Returns:
        A scalar (float32, or float64 for float64 input).

    Example:
        >>> hamming_loss(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
        tensor(4.)
    """
    if v.ndim != 3 or v.shape[1] != v.shape[2]:
        raise ValueError(f"v must be a (B, N, N) batch of assignments, got {tuple(v.shape)}")
    work = work_dtype(v)
    if target is None:
        target = torch.eye(v.shape[1], dtype=work, device=v.device)
    if target.shape not in (v.shape, v.shape[1:]):
        raise ValueError(
            f"target must be (B, N, N) or (N, N) for v {tuple(v.shape)}, got {tuple(target.shape)}"
        )
    x, t = v.to(work), target.to(dtype=work, device=v.device)
    return (x * (1.0 - t) + t * (1.0 - x)).sum((1, 2)).mean()
