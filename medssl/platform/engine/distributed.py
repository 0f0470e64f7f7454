"""Small typed helpers for distributed training: rank, world size, gathers with gradients.

Every helper also works in a plain single process, where it is the identity or rank 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch
import torch.distributed as dist

P = ParamSpec("P")
R = TypeVar("R")


def is_distributed() -> bool:
    """True when a torch.distributed process group is initialised (DDP, torchrun)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group; 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the default group; 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums each slice's gradient over ranks onto its owner."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]  # type: ignore[attr-defined]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        rows: int = ctx.rows  # type: ignore[attr-defined]
        grad = grad.contiguous()
        if dist.get_backend() == "nccl":
            own = torch.empty((rows, *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(own, grad)
            return own
        # gloo has no reduce-scatter: sum everything, keep this rank's rows.
        total = grad.clone()
        dist.all_reduce(total)
        return total[rank() * rows : (rank() + 1) * rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (B, ...) from every rank along dim 0, in rank order.

    Unlike `torch.distributed.all_gather`, the result keeps the autograd graph: the backward
    pass sums each slice's gradient from all ranks back onto the rank that owns it, which is
    what a loss over globally gathered negatives needs (DDP then averages over ranks). Every
    rank must pass the same shape. Identity when not distributed.

    Example:
        >>> gather_with_grad(torch.ones(2, 3)).shape  # single process
        torch.Size([2, 3])
    """
    if not is_distributed() or world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Like `gather_with_grad` for tensors that need no gradient (EMA targets); cheaper."""
    if not is_distributed() or world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def rank_zero_only(fn: Callable[P, R]) -> Callable[P, R | None]:
    """Decorator: run `fn` on rank 0 only; other ranks return None without calling it.

    Example:
        >>> @rank_zero_only
        ... def announce(text: str) -> str:
        ...     return text
        >>> announce("hello")
        'hello'
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        if rank() == 0:
            return fn(*args, **kwargs)
        return None

    return wrapper


def barrier() -> None:
    """Wait for every rank (a no-op outside a process group)."""
    if is_distributed():
        torch.distributed.barrier()
