"""TS2Vec's hierarchical contrastive loss: time per training step (forward + backward of the
loss) and peak memory of medssl's vectorised loss against an unfused per-level, per-term one.
medssl's loss works in row blocks recomputed in the backward pass once a similarity matrix
would exceed `DENSE_BYTES` (256 MiB), so its memory stays bounded at long crops.

Each (implementation, crop length) runs in a fresh process so that its peak memory is its own:
on CUDA the peak allocated by torch; on the CPU the growth of the peak resident set (VmHWM of
/proc/self/status, reset just before the step) over the resident size with the inputs made.
An implementation whose estimated need at a length exceeds --max-gb is recorded as skipped
there, not run.

    python benchmarks/ts2vec_loss.py --out benchmarks/results/ts2vec_loss.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import harness
import torch
import torch.nn.functional as F

from medssl.platform.losses import hierarchical
from medssl.platform.losses.hierarchical import hierarchical_contrastive_loss

IMPLEMENTATIONS = ("medssl", "unfused")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds, not minutes)")
    p.add_argument("--lengths", type=int, nargs="+", default=(1000, 2000, 5000, 10000))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dims", type=int, default=320, help="representation size per step")
    p.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--max-gb", type=float, default=6.0, help="skip lengths estimated above this")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--child", nargs=2, metavar=("IMPL", "LENGTH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.batch_size, args.dims, args.repeats = (64, 128), 2, 16, 1
    return args


# ----------------------------------------------------------------------------- the unfused loss


def _unfused_instance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Per step: 2B rows, positives i <-> i + B, self-similarity cut out by hand."""
    b = z1.shape[0]
    if b == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)  # (T, 2B, D)
    sim = torch.matmul(z, z.transpose(1, 2))
    logits = torch.tril(sim, diagonal=-1)[:, :, :-1] + torch.triu(sim, diagonal=1)[:, :, 1:]
    logits = -F.log_softmax(logits, dim=-1)
    i = torch.arange(b, device=z1.device)
    return (logits[:, i, b + i - 1].mean() + logits[:, b + i, i].mean()) / 2


def _unfused_temporal(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Per series: 2T rows, positives t <-> t + T, self-similarity cut out by hand."""
    t = z1.shape[1]
    if t == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], dim=1)  # (B, 2T, D)
    sim = torch.matmul(z, z.transpose(1, 2))
    logits = torch.tril(sim, diagonal=-1)[:, :, :-1] + torch.triu(sim, diagonal=1)[:, :, 1:]
    logits = -F.log_softmax(logits, dim=-1)
    s = torch.arange(t, device=z1.device)
    return (logits[:, s, t + s - 1].mean() + logits[:, t + s, s].mean()) / 2


def unfused_hierarchical_loss(
    z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5
) -> torch.Tensor:
    """The obvious implementation: a loop over levels, each term computed on its own, the
    views max-pooled by F.max_pool1d between levels."""
    loss, levels = z1.new_zeros(()), 0
    while z1.shape[1] > 1:
        loss = loss + alpha * _unfused_instance(z1, z2)
        loss = loss + (1 - alpha) * _unfused_temporal(z1, z2)
        levels += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
    loss = loss + alpha * _unfused_instance(z1, z2)
    return loss / (levels + 1)


LOSSES = {"medssl": hierarchical_contrastive_loss, "unfused": unfused_hierarchical_loss}


# ----------------------------------------------------------------------------- measuring


def estimated_bytes(impl: str, batch: int, length: int, dims: int) -> int:
    """Rough need of one step. Unfused: the level-0 temporal similarity (B x 2T x 2T float32)
    and about three more tensors of its size (softmax, gradient, a masked copy). medssl: the
    same while that similarity fits in `DENSE_BYTES`, above it a few blocks of that size plus
    the views and their gradients."""
    dense = 4 * batch * (2 * length) ** 2 * 4
    if impl == "unfused" or batch * (2 * length) ** 2 * 4 <= hierarchical.DENSE_BYTES:
        return dense
    return 4 * hierarchical.DENSE_BYTES + 8 * batch * length * dims * 4


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _reset_peak_resident() -> None:
    """Start the peak resident set (VmHWM) afresh: imports peak above what the loss uses."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_resident_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One implementation at one length, in this (fresh) process."""
    impl, length = args.child[0], int(args.child[1])
    device = torch.device(args.device)
    torch.manual_seed(0)
    shape = (args.batch_size, length, args.dims)
    # Unit-scale dot products of 320 dims would overflow exp(); TS2Vec's are small too.
    z1 = (torch.randn(shape, device=device) * 0.05).requires_grad_()
    z2 = (torch.randn(shape, device=device) * 0.05).requires_grad_()
    loss_fn = LOSSES[impl]

    def step() -> float:
        z1.grad = z2.grad = None
        loss = loss_fn(z1, z2)
        loss.backward()
        return float(loss)

    # A tiny step first: the autograd engine and kernels' one-off allocations are not the loss's.
    small = torch.randn(2, 4, args.dims, device=device, requires_grad=True)
    loss_fn(small, small.detach().clone()).backward()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        _reset_peak_resident()
        base = _resident_bytes()
    value = step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = _peak_resident_bytes() - base
    times = [harness.time_once(step, device) for _ in range(args.repeats)]
    return {
        "loss": value,
        "peak_bytes": int(peak),
        "times_s": times,
        "median_s": statistics.median(times),
    }


def run_child(args: argparse.Namespace, impl: str, length: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        impl,
        str(length),
        "--batch-size",
        str(args.batch_size),
        "--dims",
        str(args.dims),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args)))
        return {}
    device = torch.device(args.device)
    result: dict[str, Any] = {
        "benchmark": "ts2vec_loss",
        "environment": harness.environment(device),
        "parameters": {
            "lengths": list(args.lengths),
            "batch_size": args.batch_size,
            "dims": args.dims,
            "repeats": args.repeats,
            "threads": args.threads,
            "max_gb": args.max_gb,
            "quick": args.quick,
            "step": "forward + backward of the loss on (batch, length, dims) float32 inputs",
            "peak_memory": "cuda: max_memory_allocated growth"
            if device.type == "cuda"
            else "cpu: growth of the peak resident set (VmHWM, reset before the step) over the "
            "resident size with the inputs allocated",
        },
        "runs": [],
    }
    for length in args.lengths:
        run: dict[str, Any] = {"length": length}
        for impl in IMPLEMENTATIONS:
            need = estimated_bytes(impl, args.batch_size, length, args.dims)
            run.setdefault("estimated_bytes", {})[impl] = need
            if need > args.max_gb * 2**30:
                run[impl] = {
                    "skipped": f"needs about {need / 2**30:.1f} GB, above --max-gb {args.max_gb}"
                }
            else:
                run[impl] = run_child(args, impl, length)
            print(f"length {length} {impl}: {run[impl]}", flush=True)
        if all("median_s" in run[i] for i in IMPLEMENTATIONS):
            run["speedup_medssl_over_unfused"] = (
                run["unfused"]["median_s"] / run["medssl"]["median_s"]
            )
            run["loss_relative_difference"] = abs(
                run["medssl"]["loss"] - run["unfused"]["loss"]
            ) / abs(run["unfused"]["loss"])
        result["runs"].append(run)
    harness.write_json(args.out, result)
    print(json.dumps(result["runs"], indent=1))
    return result


if __name__ == "__main__":
    main()
