"""LVM-Med's graph-matching loss: what it adds to a training step, and batched against a loop.

Per batch size B (two views of B images, graphs of N = 16):

* backbone: one SimCLR-shaped step without the matching: both views, encoder, pooling,
  projector, a trivial loss, backward.
* lvmmed: the full lvmmed step (the same plus kNN graphs, GCN, affinities, the batched QAP
  solve with IMLE: two solves per step), forward and backward.
* solves: the two batched QAP solves of a step alone (how much of the matching is the solver).
* matching_batched / matching_loop: the matching part alone on the same projections and
  feature maps: medssl's batched affinities and solver, against a Python loop over graphs
  that builds each graph's affinities separately and solves each QAP on the host with IPFP
  over scipy's linear_sum_assignment (as the paper's CPU solver and pygmtools' IPFP do).

The goal is matching cost <= 10 % of the backbone step on a GPU. On a CPU the rows say what
the loss costs there; they are not the goal's measurement.

    python benchmarks/lvmmed.py --out benchmarks/results/<date>_<device>_lvmmed.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from medssl.platform.batch import Batch
from medssl.platform.encoders import build_encoder
from medssl.platform.encoders.monai_common import global_pool
from medssl.platform.methods.lvmmed import LVMMed
from medssl.platform.solvers import hamming_loss, solve_qap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds, not minutes)")
    p.add_argument("--batches", type=int, nargs="+", default=(64, 128, 256, 512, 1024))
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--depth", type=int, default=18, help="ResNet depth (18 or 50)")
    p.add_argument("--widen", type=float, default=1.0, help="ResNet widen_factor")
    p.add_argument("--group-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--restarts", type=int, default=2, help="solve_qap restarts (xray-lvmmed: 2)")
    p.add_argument("--search-steps", type=int, default=32,
                   help="solve_qap swap-search steps (xray-lvmmed: 32)")
    p.add_argument("--loop-max-batch", type=int, default=1024,
                   help="skip the per-graph loop above this batch (it is slow)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.image_size, args.depth, args.widen = (32,), 32, 10, 0.125
        args.group_size, args.repeats = 8, 1
    return args


def _ipfp_scipy(unary: np.ndarray, quadratic: np.ndarray, iterations: int = 50) -> np.ndarray:
    """One QAP on the host: IPFP (Leordeanu et al., 2009) with scipy's exact LAP each step,
    started from the uniform doubly stochastic matrix; returns the best permutation seen."""
    n = unary.shape[0]
    m = quadratic.copy()
    m[np.diag_indices_from(m)] += unary.reshape(-1)
    x = np.full(n * n, 1.0 / n)
    best, best_score = None, -np.inf
    for _ in range(iterations):
        rows, cols = linear_sum_assignment((m @ x).reshape(n, n), maximize=True)
        b = np.zeros((n, n))
        b[rows, cols] = 1.0
        b = b.reshape(-1)
        score = b @ m @ b
        if score > best_score:
            best, best_score = b, score
        step = b - x
        c, d = x @ m @ step, step @ m @ step
        r = 1.0 if d >= 0 else min(1.0, -c / d)
        if np.abs(r * step).max() < 1e-9:
            break
        x = x + r * step
    assert best is not None
    return best.reshape(n, n)


class _LoopIMLE(torch.autograd.Function):
    """IMLE around the host solver, one graph: two solves per step, like `imle_qap`."""

    @staticmethod
    def forward(ctx: Any, unary: torch.Tensor, quadratic: torch.Tensor, lam: float) -> Any:
        u, k = unary.detach().double().cpu().numpy(), quadratic.detach().double().cpu().numpy()
        v = _ipfp_scipy(u, k)
        ctx.save_for_backward(unary, quadratic)
        ctx.v, ctx.lam = v, lam
        return torch.as_tensor(v, dtype=unary.dtype, device=unary.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        unary, quadratic = ctx.saved_tensors
        lam = ctx.lam
        target = unary.detach().double().cpu().numpy() - lam * grad.double().cpu().numpy()
        v2 = _ipfp_scipy(target, quadratic.detach().double().cpu().numpy())
        d_unary = (ctx.v - v2) / lam
        a, b = ctx.v.reshape(-1), v2.reshape(-1)
        d_quadratic = (np.outer(a, a) - np.outer(b, b)) / lam
        as_t = lambda x: torch.as_tensor(x, dtype=unary.dtype, device=unary.device)  # noqa: E731
        return as_t(d_unary), as_t(d_quadratic), None


def _matching_batched(method: LVMMed, cells: torch.Tensor, z: torch.Tensor, centres: torch.Tensor):
    parts = method.graph_affinities(z, cells, centres)
    v = method.match(parts["unary"], parts["quadratic"], torch.arange(z.shape[0] // 2))
    return hamming_loss(v)


def _matching_loop(method: LVMMed, cells: torch.Tensor, z: torch.Tensor, centres: torch.Tensor):
    """The same affinities one graph at a time, each QAP solved on the host with IPFP."""
    n, half = method.config.group_size, z.shape[0] // 2
    eye = torch.eye(n, device=z.device)
    losses = []
    for start in range(0, half - n + 1, n):
        rows = torch.cat([torch.arange(start, start + n), torch.arange(half + start, half + start + n)])
        parts = method.graph_affinities(z[rows], cells[rows], centres[rows])
        unary = parts["unary"][0].float() - method.config.margin * eye  # as LVMMed.match
        v = _LoopIMLE.apply(unary, parts["quadratic"][0].float(), method.config.imle_lambda)
        losses.append((v * (1 - eye) + eye * (1 - v)).sum())
    return torch.stack(losses).mean()


def run_batch(args: argparse.Namespace, batch_size: int, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    encoder = build_encoder("resnet", spatial_dims=2, in_channels=1, depth=args.depth,
                            widen_factor=args.widen, conv1_t_size=3, no_max_pool=True)
    solver = {"restarts": args.restarts, "search_steps": args.search_steps}
    method = LVMMed(encoder, {"group_size": args.group_size, "solver": solver}).to(device)
    batch = Batch(x=torch.rand(batch_size, 1, args.image_size, args.image_size),
                  index=torch.arange(batch_size)).to(device)

    def backbone() -> None:
        view_s, view_t = method._views(batch)
        maps = method.encoder.encode(torch.cat([view_s.images, view_t.images]))[0]
        method.projector(global_pool(maps)).square().mean().backward()

    def full() -> None:
        method(batch)["loss"].backward()

    with torch.no_grad():
        view_s, view_t = method._views(batch)
        maps = method.encoder.encode(torch.cat([view_s.images, view_t.images]))[0]
        grid = tuple(maps.shape[2:])
        centres = torch.cat([view_s.cell_centres(grid), view_t.cell_centres(grid)])
        flat = maps.flatten(2).transpose(1, 2).contiguous()
        z0 = method.projector(global_pool(maps))
    z = z0.clone().requires_grad_(True)
    cells = flat.clone().requires_grad_(True)

    def batched() -> None:
        _matching_batched(method, cells, z, centres).backward()

    def loop() -> None:
        _matching_loop(method, cells, z, centres).backward()

    with torch.no_grad():
        parts = method.graph_affinities(z0, flat, centres)
    unary, quadratic = parts["unary"].float(), parts["quadratic"].float()

    def solves() -> None:
        # The two batched QAP solves of a step (IMLE's forward and backward) and nothing else.
        for _ in range(2):
            solve_qap(unary, quadratic, **method.config.solver)

    fns = {"backbone": backbone, "lvmmed": full, "matching_batched": batched, "solves": solves}
    if batch_size <= args.loop_max_batch:
        fns["matching_loop"] = loop
    timing = harness.measure(fns, device, warmup=1, repeats=args.repeats)
    result: dict[str, Any] = {"batch": batch_size, "graphs": batch_size // args.group_size,
                              "feature_map": list(grid), **timing}
    back, whole = timing["backbone"]["median_s"], timing["lvmmed"]["median_s"]
    result["added_by_matching_s"] = whole - back
    result["matching_fraction_of_backbone"] = (whole - back) / back
    result["matching_batched_fraction_of_backbone"] = timing["matching_batched"]["median_s"] / back
    result["solves_fraction_of_matching"] = (
        timing["solves"]["median_s"] / timing["matching_batched"]["median_s"]
    )
    if "matching_loop" in timing:
        result["speedup_batched_over_loop"] = (
            timing["matching_loop"]["median_s"] / timing["matching_batched"]["median_s"]
        )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runs = []
    for batch_size in args.batches:
        row = run_batch(args, batch_size, device)
        runs.append(row)
        print(
            f"B={batch_size:5d}  backbone {row['backbone']['median_s']:.3f} s  "
            f"lvmmed {row['lvmmed']['median_s']:.3f} s  "
            f"(+{100 * row['matching_fraction_of_backbone']:.0f} %)  "
            f"matching batched {row['matching_batched']['median_s']:.3f} s "
            f"(solves {100 * row['solves_fraction_of_matching']:.0f} %)"
            + (f"  loop {row['matching_loop']['median_s']:.3f} s" if "matching_loop" in row else ""),
            flush=True,
        )
    result = {
        "benchmark": "lvmmed",
        "environment": harness.environment(device),
        "parameters": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in vars(args).items() if k != "out"},
        "runs": runs,
    }
    harness.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
