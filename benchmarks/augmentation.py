"""Augmentation throughput: medssl's ViewGenerator (one sampling grid per view for a whole batch)
against MONAI's equivalent array transform chain applied sample by sample in a Python loop.

Two views per sample; crop + zoom + rotation + flips, then gamma, contrast, shift and noise.

    python benchmarks/augmentation.py --out augmentation.json
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import harness
import torch

from medssl.platform.augment import AugmentConfig, ViewGenerator, sample_keys

VIEWS = 2
#: One setting for both implementations (crop fraction of the volume, degrees, zoom, ...).
SETTINGS = {
    "crop_scale": (0.4, 1.0),
    "rotate_degrees": 15.0,
    "scale_range": (0.9, 1.1),
    "flip_prob": 0.5,
    "gamma": (0.8, 1.25),
    "contrast": (0.8, 1.2),
    "brightness": 0.1,
    "noise_std": 0.02,
}


def parse_size(text: str) -> tuple[int, int, int]:
    """'96x96x64' -> (96, 96, 64)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"size must look like 64x64x64, got {text!r}")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", help="write the results as JSON to this file")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds, not minutes)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=(8, 32))
    p.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=[(32, 32, 32), (64, 64, 64), (96, 96, 64)],
        metavar="DxHxW",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions per configuration")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--devices", nargs="+", help="default: cpu, and cuda when there is one")
    p.add_argument(
        "--noise-ablation-batch",
        type=int,
        default=8,
        help="batch size of the extra runs without Gaussian noise (0: none)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.sizes, args.repeats = (2,), [(16, 16, 16)], 1
        args.noise_ablation_batch = 2
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return args


def medssl_generator(size: tuple[int, ...], noise: bool) -> ViewGenerator:
    settings = dict(SETTINGS, noise_std=SETTINGS["noise_std"] if noise else 0.0)
    return ViewGenerator(AugmentConfig(output_size=size, padding_mode="border", **settings))


def monai_chain(size: tuple[int, ...], noise: bool, seed: int) -> Any:
    """The per-sample MONAI chain: random-size crop, resize to the patch, affine, flips, intensity.

    The crop's smallest side is the cube root of the smallest volume fraction, so a crop covers
    0.4-1 of the volume as medssl's does; resizing before the affine keeps that warp at patch size.
    """
    from monai.transforms import (
        Compose,
        RandAdjustContrast,
        RandAffine,
        RandFlip,
        RandGaussianNoise,
        RandScaleIntensityFixedMean,
        RandShiftIntensity,
        RandSpatialCrop,
        Resize,
    )

    low = SETTINGS["crop_scale"][0] ** (1.0 / 3.0)
    smallest = tuple(max(1, math.ceil(s * low)) for s in size)
    angle = math.radians(SETTINGS["rotate_degrees"])
    zoom = SETTINGS["scale_range"][1] - 1.0
    flip = SETTINGS["flip_prob"]
    steps = [
        RandSpatialCrop(smallest, max_roi_size=size, random_size=True),
        Resize(size, mode="trilinear"),
        RandAffine(
            prob=1.0,
            rotate_range=(angle,) * 3,
            scale_range=(zoom,) * 3,
            mode="bilinear",
            padding_mode="border",
        ),
        RandFlip(prob=flip, spatial_axis=0),
        RandFlip(prob=flip, spatial_axis=1),
        RandFlip(prob=flip, spatial_axis=2),
        RandAdjustContrast(prob=1.0, gamma=SETTINGS["gamma"]),
        RandScaleIntensityFixedMean(prob=1.0, factors=SETTINGS["contrast"][1] - 1.0),
        RandShiftIntensity(offsets=SETTINGS["brightness"], prob=1.0),
    ]
    if noise:
        steps.append(RandGaussianNoise(prob=1.0, std=SETTINGS["noise_std"], sample_std=False))
    chain = Compose(steps)
    chain.set_random_state(seed=seed)
    return chain


def medssl_views(generator: ViewGenerator, x: torch.Tensor, epoch: int = 0) -> list[torch.Tensor]:
    index = torch.arange(x.shape[0], device=x.device)
    return [generator(x, sample_keys(index, seed=0, epoch=epoch, view=v))[0] for v in range(VIEWS)]


def monai_views(chain: Any, x: torch.Tensor) -> list[torch.Tensor]:
    return [
        torch.stack([torch.as_tensor(chain(x[i])) for i in range(x.shape[0])]) for _ in range(VIEWS)
    ]


def check_views(name: str, views: list[torch.Tensor], x: torch.Tensor) -> None:
    """Both views of every sample have the input's shape, device and finite values."""
    for view in views:
        if view.shape != x.shape or view.device != x.device or not torch.isfinite(view).all():
            raise RuntimeError(
                f"{name} gave a view of shape {tuple(view.shape)} on {view.device}, "
                f"expected {tuple(x.shape)} on {x.device} with finite values"
            )


def bench_one(
    device: torch.device, size: tuple[int, int, int], batch: int, noise: bool, args: Any
) -> dict[str, Any]:
    """samples/s of both implementations on one (device, size, batch); a sample = two views."""
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    x = torch.rand((batch, 1, *size), generator=gen).to(device)
    generator, chain = medssl_generator(size, noise), monai_chain(size, noise, args.seed)
    check_views("medssl", medssl_views(generator, x[:2]), x[:2])
    check_views("monai", monai_views(chain, x[:2]), x[:2])
    out: dict[str, Any] = {
        "device": str(device),
        "size": list(size),
        "batch": batch,
        "noise": noise,
    }
    runs = {"medssl": lambda: medssl_views(generator, x), "monai": lambda: monai_views(chain, x)}
    # The shape checks above warm up at this volume size on the CPU; a full-size warm-up round
    # is cheap on a GPU and settles its allocator.
    warmup = 1 if device.type == "cuda" else 0
    timings = harness.measure(runs, device, warmup=warmup, repeats=args.repeats)
    for name, timing in timings.items():
        out[name] = dict(timing, samples_per_s=batch / timing["median_s"])
    out["ratio_medssl_over_monai"] = out["medssl"]["samples_per_s"] / out["monai"]["samples_per_s"]
    print(
        f"{device.type:4s} {'x'.join(map(str, size)):>9s} B={batch:<3d} noise={noise!s:5s} "
        f"medssl {out['medssl']['samples_per_s']:8.2f}/s  monai {out['monai']['samples_per_s']:8.2f}/s"
        f"  ratio {out['ratio_medssl_over_monai']:.2f}",
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from monai.data import set_track_meta

    # Plain tensors in and out: MONAI's metadata bookkeeping is not needed for views.
    set_track_meta(False)
    result: dict[str, Any] = {
        "benchmark": "augmentation",
        "environment": harness.environment(),
        "parameters": {
            "settings": SETTINGS,
            "views_per_sample": VIEWS,
            "batch_sizes": list(args.batch_sizes),
            "sizes": [list(s) for s in args.sizes],
            "repeats": args.repeats,
            "devices": list(args.devices),
            "noise_ablation_batch": args.noise_ablation_batch,
            "quick": args.quick,
            "monai_track_meta": False,
        },
        "runs": [],
    }
    for name in args.devices:
        device = torch.device(name)
        for size in args.sizes:
            for batch in args.batch_sizes:
                result["runs"].append(bench_one(device, size, batch, True, args))
            if args.noise_ablation_batch > 0:
                result["runs"].append(
                    bench_one(device, size, args.noise_ablation_batch, False, args)
                )
    harness.write_json(args.out, result)
    print(json.dumps(result["environment"], indent=1))
    return result


if __name__ == "__main__":
    main()
