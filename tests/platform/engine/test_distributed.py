"""Distributed helpers, single-process and in a real 2-process gloo group: a global batch
of 8 split 4 + 4 must give the single-process loss and (DDP-averaged) gradients of SimCLR
and of the image-text methods (ConVIRT, MoRE), whose negatives are gathered too."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder, EncoderOutput
from medssl.platform.engine.distributed import (
    gather_no_grad,
    gather_with_grad,
    is_distributed,
    rank,
    rank_zero_only,
    world_size,
)
from medssl.platform.methods.base import Method
from medssl.platform.methods.convirt import ConVIRT
from medssl.platform.methods.more import MoRE
from medssl.platform.methods.simclr import SimCLR

WORLD = 2
GLOBAL_BATCH = 8
# Each variant is (method config, gathered keys need gradients?).
VARIANTS: dict[str, dict[str, Any]] = {
    "simclr": {"loss": "infonce"},
    "dcl": {"loss": "dcl", "temperature": 0.2},
    "ema": {"loss": "infonce", "ema_momentum": 0.9},
    "convirt": {},
    "more": {},
}
#: Small, dropout-free towers of the image-text methods.
TOWERS = {
    "projection_dim": 8,
    "hidden_dim": 16,
    "text_encoder": {"width": 8, "depth": 1, "heads": 2, "dropout": 0.0},
}


class FlatEncoder(Encoder):
    """Convolution, tanh, global average pooling: no batch norm, so ranks cannot differ."""

    name = "flat"

    def __init__(self) -> None:
        super().__init__(spatial_dims=2, in_channels=1)
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.feature_dim = 6

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        return EncoderOutput(torch.tanh(self.conv(x)).mean(dim=(2, 3)))


def _build(variant: str) -> Method:
    torch.manual_seed(0)
    method: Method
    if variant == "convirt":
        method = ConVIRT(FlatEncoder(), TOWERS, vocab_size=20, max_tokens=6)
    elif variant == "more":
        ecg = {"width": 8, "depth": 1, "heads": 2, "dropout": 0.0, "patch_size": 4}
        method = MoRE(FlatEncoder(), {**TOWERS, "ecg_encoder": ecg}, vocab_size=20, max_tokens=6, ecg_leads=2)
    else:
        method = SimCLR(FlatEncoder(), {"projection_dim": 8, "hidden_dim": 16, **VARIANTS[variant]})
    method = method.double()
    method.seed, method.epoch = 3, 1
    return method


def _global_batch() -> Batch:
    """Images with index keys, and the reports and ECGs the image-text methods read."""
    gen = torch.Generator().manual_seed(42)
    x = torch.rand(GLOBAL_BATCH, 1, 12, 12, generator=gen, dtype=torch.float64)
    text = torch.randint(5, 20, (GLOBAL_BATCH, 6), generator=gen)
    return Batch(
        x=x,
        index=torch.arange(100, 100 + GLOBAL_BATCH),
        text=text,
        text_mask=torch.ones_like(text, dtype=torch.bool),
        ecg=torch.randn(GLOBAL_BATCH, 2, 16, generator=gen, dtype=torch.float64),
        ecg_present=torch.ones(GLOBAL_BATCH, dtype=torch.bool),
    )


def _loss_and_grads(method: Method, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    method.zero_grad()
    loss = method(batch)["loss"]
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in method.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def _worker(process: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=process, world_size=WORLD
    )
    try:
        assert is_distributed() and rank() == process and world_size() == WORLD
        results: dict[str, Any] = {"rank_zero_only": rank_zero_only(lambda: process)()}

        local = torch.full((2, 3), float(process + 1), dtype=torch.float64, requires_grad=True)
        gathered = gather_with_grad(local)
        weights = torch.arange(gathered.numel(), dtype=torch.float64).view_as(gathered)
        (gathered * weights).sum().backward()
        results["gathered"] = gathered.detach()
        results["gather_grad"] = local.grad.clone()
        results["gather_no_grad"] = gather_no_grad(local.detach())

        batch = _global_batch()
        part = slice(process * GLOBAL_BATCH // WORLD, (process + 1) * GLOBAL_BATCH // WORLD)
        local_batch = Batch({k: v[part] for k, v in batch.items()})
        for variant in VARIANTS:
            loss, grads = _loss_and_grads(_build(variant), local_batch)
            # What DDP does: average the loss for logging and the gradients across ranks.
            dist.all_reduce(loss)
            for g in grads.values():
                dist.all_reduce(g)
            results[variant] = (loss / WORLD, {n: g / WORLD for n, g in grads.items()})
        torch.save(results, os.path.join(out_dir, f"rank{process}.pt"))
    finally:
        dist.destroy_process_group()


def test_single_process_helpers() -> None:
    assert not is_distributed() and rank() == 0 and world_size() == 1
    t = torch.randn(3, 2)
    assert gather_with_grad(t) is t and gather_no_grad(t) is t

    @rank_zero_only
    def shout(text: str) -> str:
        return text.upper()

    assert shout("ok") == "OK" and shout.__name__ == "shout"


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ddp")
    # fork, not spawn: a spawned interpreter re-imports torch and medssl (MONAI included), which
    # costs ~10 s per process on a small machine. One intra-op thread per worker, as in
    # DataLoader workers, keeps the forked OpenMP runtime out of play.
    mp.start_processes(
        _worker, args=(str(tmp / "store"), str(tmp)), nprocs=WORLD, join=True, start_method="fork"
    )
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_gather_with_grad_in_a_process_group(two_rank_results: list[dict[str, Any]]) -> None:
    expected = torch.cat([torch.full((2, 3), 1.0), torch.full((2, 3), 2.0)]).double()
    weights = torch.arange(12, dtype=torch.float64).view(4, 3)
    for r, result in enumerate(two_rank_results):
        assert result["rank_zero_only"] == (0 if r == 0 else None)
        torch.testing.assert_close(result["gathered"], expected)
        torch.testing.assert_close(result["gather_no_grad"], expected)
        # Every rank differentiates the same weighted sum; the owner receives the sum.
        torch.testing.assert_close(result["gather_grad"], WORLD * weights[2 * r : 2 * r + 2])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_ranks_equal_one_process(two_rank_results: list[dict[str, Any]], variant: str) -> None:
    loss, grads = _loss_and_grads(_build(variant), _global_batch())
    for result in two_rank_results:
        rank_loss, rank_grads = result[variant]
        torch.testing.assert_close(rank_loss, loss, atol=1e-5, rtol=0)
        assert set(rank_grads) == set(grads)
        for name, g in grads.items():
            assert float(g.abs().max()) > 0, name
            torch.testing.assert_close(rank_grads[name], g, atol=1e-5, rtol=0, msg=name)


def test_a_split_without_gathering_would_differ(two_rank_results: list[dict[str, Any]]) -> None:
    """Guards the test itself: rank-local negatives give a different loss than the global one."""
    method = _build("simclr")
    batch = _global_batch()
    local = [
        method(Batch({k: v[s] for k, v in batch.items()}))["loss"].detach()
        for s in (slice(0, 4), slice(4, 8))
    ]
    assert abs(float(torch.stack(local).mean() - two_rank_results[0]["simclr"][0])) > 1e-3
