"""The causal trend head of the TS2Vec encoder (`encoder.kwargs.trend_kernels`, CoST's head that
AutoTCL's forecasting encoder uses): time of three ways to compute the mean of causal
convolutions with kernels 1, 2, 4, ..., 128 over a 320-d representation.

- `separate`: one Conv1d per kernel size, padded by k - 1 and cropped (CoST's own form);
- `direct`: the kernels right-aligned and averaged into one 128-tap causal convolution;
- `medssl`: that one convolution by overlap-save FFT (`causal_convolution`), what the encoder runs.

Two cases: a training step (forward + backward, 2 sections of 3000 steps: ETTh2's pretraining
batch) and the forecasting protocol's encoding (forward only, 256 windows of 201 steps). The
outputs of the three are compared on the same inputs.

    python benchmarks/trend_head.py --out benchmarks/results/trend_head.json
"""

from __future__ import annotations

import argparse
from typing import Any

import harness
import torch
import torch.nn.functional as F

from medssl.platform.encoders.ts2vec import TS2VecEncoder, causal_convolution

IMPLEMENTATIONS = ("separate", "direct", "medssl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", help="write the results as JSON to this file")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds, not minutes)")
    p.add_argument("--dims", type=int, default=320, help="representation size per step")
    p.add_argument("--kernels", type=int, nargs="+", default=[2**i for i in range(8)])
    p.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.quick:
        args.dims, args.kernels, args.repeats = 16, [1, 2, 4, 8, 16, 32], 1
    return args


def cases(quick: bool) -> dict[str, dict[str, Any]]:
    if quick:
        return {
            "train": {"batch": 2, "length": 300, "backward": True},
            "encode": {"batch": 8, "length": 41, "backward": False},
        }
    return {
        "train": {"batch": 2, "length": 3000, "backward": True},
        "encode": {"batch": 256, "length": 201, "backward": False},
    }


def head_output(head: torch.nn.Module, h: torch.Tensor, impl: str) -> torch.Tensor:
    """The head's output on `h` (B, D, T), before the padding mask, computed by `impl`."""
    convs = list(head.convs)
    if impl == "separate":
        return torch.stack(
            [
                F.conv1d(h, c.weight, c.bias, padding=c.kernel_size[0] - 1)[..., : h.shape[-1]]
                for c in convs
            ]
        ).mean(dim=0)
    weight, bias = head.combined()
    if impl == "direct":
        return F.conv1d(F.pad(h, (weight.shape[-1] - 1, 0)), weight) + bias
    return causal_convolution(h, weight) + bias


def run_case(args: argparse.Namespace, batch: int, length: int, backward: bool) -> dict[str, Any]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    encoder = TS2VecEncoder(
        spatial_dims=1, in_channels=1, output_dim=args.dims, trend_kernels=args.kernels
    )
    head = encoder.trend.to(device)  # type: ignore[union-attr]
    h = torch.randn(batch, args.dims, length, device=device, requires_grad=backward)

    def step(impl: str) -> None:
        if backward:
            head.zero_grad(set_to_none=True)
            head_output(head, h, impl).sum().backward()
        else:
            with torch.no_grad():
                head_output(head, h, impl)

    timings = harness.measure(
        {impl: (lambda impl=impl: step(impl)) for impl in IMPLEMENTATIONS},
        device,
        warmup=1,
        repeats=args.repeats,
    )
    with torch.no_grad():
        outs = {impl: head_output(head, h, impl) for impl in IMPLEMENTATIONS}
    scale = outs["separate"].abs().max().item()
    result: dict[str, Any] = {"batch": batch, "length": length, "backward": backward, **timings}
    for impl in ("direct", "medssl"):
        result[f"max_relative_difference_{impl}"] = (
            outs[impl] - outs["separate"]
        ).abs().max().item() / scale
    for impl in ("separate", "direct"):
        result[f"speedup_medssl_over_{impl}"] = (
            timings[impl]["median_s"] / timings["medssl"]["median_s"]
        )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result: dict[str, Any] = {
        "benchmark": "trend_head",
        "environment": harness.environment(device),
        "parameters": {
            "quick": args.quick,
            "dims": args.dims,
            "kernels": args.kernels,
            "repeats": args.repeats,
            "threads": args.threads,
        },
        "cases": {},
    }
    for name, case in cases(args.quick).items():
        result["cases"][name] = run_case(args, **case)
        row = result["cases"][name]
        print(
            f"{name}: B={case['batch']} T={case['length']} "
            + " ".join(f"{impl} {row[impl]['median_s']:.3f}s" for impl in IMPLEMENTATIONS)
            + f" | medssl vs separate {row['speedup_medssl_over_separate']:.1f}x,"
            f" vs direct {row['speedup_medssl_over_direct']:.1f}x"
        )
    harness.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
