"""Dataset reduction throughput: medssl's batched dHash (all slices of a volume at once, all
Hamming distances as one matrix product) against `imagehash.dhash` slice by slice, as the
paper's scripts run it, on the same 8-bit slices of whole volumes.

Measured per volume: hashing alone (slices hashed per second) and the whole Hash-6 selection
(hashes + greedy pass), both from the same float32 volume (the 8-bit scaling is inside both
timings), and how far the two agree (hash bits, kept slices). Beside them, the floor: one
`torch.aminmax` over the volume, the read of every voxel that the per-volume 8-bit scaling
needs before any hashing starts; its rate over imagehash's bounds what any implementation of
this hash input could gain on the device.

    python benchmarks/reduction.py --out reduction.json
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch

from medssl.modalities.volume.geometry import axis_codes
from medssl.modalities.volume.slices import axial_slices
from medssl.platform.reduction import DHash
from medssl.synthetic import generate_phantom

_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_CT = ("image3d", "totalsegmentator", "example_ct.nii.gz")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds, not minutes)")
    p.add_argument("--data", type=Path, help="shared data folder (default: MEDSSL_TEST_DATA)")
    p.add_argument("--no-real", action="store_true", help="skip the TotalSegmentator CT file")
    p.add_argument("--shape", type=int, nargs=3, default=(512, 512, 100), metavar="VOXELS")
    p.add_argument("--threshold", type=int, default=6, help="Hamming threshold (Hash-n)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per implementation")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    if args.quick:
        args.shape, args.repeats = (96, 96, 24), 1
        args.no_real = args.no_real or args.data is None
    return args


def load_cases(args: argparse.Namespace) -> list[tuple[str, torch.Tensor]]:
    """(name, slices (n, rows, cols) float32) of each volume, in the pipeline's orientation."""
    image, _, affine = generate_phantom(0, shape=tuple(args.shape), spacing=(0.8, 0.8, 2.0))
    slices, _, _ = axial_slices(image.astype(np.float32), axis_codes(affine))
    cases = [(f"phantom_{'x'.join(map(str, args.shape))}", slices)]
    if not args.no_real:
        root = args.data or Path(os.environ.get("MEDSSL_TEST_DATA", str(_DEFAULT_DATA)))
        path = root.joinpath(*REAL_CT)
        if path.is_file():
            import nibabel as nib

            nifti = nib.load(path)
            volume = np.asarray(nifti.dataobj, dtype=np.float32)
            slices, _, _ = axial_slices(volume, axis_codes(nifti.affine))
            cases.append(("example_ct", slices))
    return cases


# ----------------------------------------------------------------------------- imagehash


def imagehash_hashes(volume: np.ndarray) -> np.ndarray:
    """(n, 64) bool: per-volume min-max to 8 bits, then one PIL image and dhash per slice."""
    import imagehash
    from PIL import Image

    lo, hi = float(volume.min()), float(volume.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    grey = np.clip(np.floor((volume - lo) * scale + 0.5), 0, 255).astype(np.uint8)
    return np.stack([imagehash.dhash(Image.fromarray(s)).hash.ravel() for s in grey])


def imagehash_select(volume: np.ndarray, threshold: int) -> list[int]:
    """The paper's loop: the first remaining hash is a kept reference; XOR it against the
    remaining ones and delete every one within `threshold` bits (the reference included)."""
    hashes = imagehash_hashes(volume)
    remaining = np.arange(len(hashes))
    kept = []
    while len(remaining):
        distance = np.logical_xor(hashes[remaining[0]], hashes[remaining]).sum(axis=1)
        kept.append(int(remaining[0]))
        remaining = remaining[distance > threshold]
    return kept


# ----------------------------------------------------------------------------- measuring


def _rates(timings: dict[str, dict[str, Any]], n: int) -> dict[str, dict[str, Any]]:
    return {name: dict(t, slices_per_s=n / t["median_s"]) for name, t in timings.items()}


def run_case(
    name: str, slices: torch.Tensor, args: argparse.Namespace, devices: list[torch.device]
) -> dict[str, Any]:
    n = slices.shape[0]
    print(f"[{name}] {n} slices of {tuple(slices.shape[1:])}", flush=True)
    reducer = DHash({"threshold": args.threshold})
    as_numpy = slices.numpy()
    on_device = {d: slices.to(d) for d in devices}
    hash_fns: dict[str, Callable[[], Any]] = {"imagehash": lambda: imagehash_hashes(as_numpy)}
    select_fns: dict[str, Callable[[], Any]] = {
        "imagehash": lambda: imagehash_select(as_numpy, args.threshold)
    }
    for device, volume in on_device.items():
        hash_fns[f"medssl_{device.type}"] = lambda v=volume: reducer.hashes(v)
        select_fns[f"medssl_{device.type}"] = lambda v=volume: reducer.select(v)
        # The floor: the per-volume min..max that the 8-bit input needs reads every voxel
        # once, so no implementation of this hash input can be faster than this pass alone.
        hash_fns[f"minmax_floor_{device.type}"] = lambda v=volume: torch.aminmax(v)
    result: dict[str, Any] = {"shape": list(slices.shape), "n_slices": n}
    for stage, fns in (("hash", hash_fns), ("select", select_fns)):
        out: dict[str, Any] = {}
        for device in devices:
            # Timed alone per device so that CUDA events bracket only that device's calls.
            mine = (f"medssl_{device.type}", f"minmax_floor_{device.type}")
            chosen = {k: v for k, v in fns.items() if k == "imagehash" or k in mine}
            timings = harness.measure(chosen, device, warmup=1, repeats=args.repeats)
            out.update(_rates(timings, n))
        for device in devices:
            key = f"medssl_{device.type}"
            out[f"ratio_{key}_over_imagehash"] = (
                out[key]["slices_per_s"] / out["imagehash"]["slices_per_s"]
            )
            floor = f"minmax_floor_{device.type}"
            if floor in out:
                # The most any implementation could gain over imagehash on this device.
                out[f"ratio_{floor}_over_imagehash"] = (
                    out[floor]["slices_per_s"] / out["imagehash"]["slices_per_s"]
                )
        result[stage] = out
    ours = reducer.hashes(slices).numpy()
    theirs = imagehash_hashes(as_numpy)
    kept_ours, kept_theirs = reducer.select(slices), imagehash_select(as_numpy, args.threshold)
    result["agreement"] = {
        "bit_fraction": float((ours == theirs).mean()),
        "slices_with_identical_hash": int((ours == theirs).all(axis=1).sum()),
        "same_kept_slices": kept_ours == kept_theirs,
        "kept_medssl": len(kept_ours),
        "kept_imagehash": len(kept_theirs),
    }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    result: dict[str, Any] = {
        "benchmark": "reduction",
        "environment": harness.environment(devices[-1]),
        "parameters": {
            "shape": list(args.shape),
            "threshold": args.threshold,
            "repeats": args.repeats,
            "threads": args.threads,
            "quick": args.quick,
            "devices": [str(d) for d in devices],
            "hash_input": "per-volume min-max to 8 bits, rounded half up",
        },
        "cases": {},
    }
    for name, slices in load_cases(args):
        result["cases"][name] = run_case(name, slices, args, devices)
    harness.write_json(args.out, result)
    for name, case in result["cases"].items():
        for stage in ("hash", "select"):
            rates = ", ".join(
                f"{k} {v['slices_per_s']:.0f}/s"
                for k, v in case[stage].items()
                if isinstance(v, dict)
            )
            print(f"{name} {stage}: {rates}", flush=True)
        print(f"{name} agreement: {case['agreement']}", flush=True)
    return result


if __name__ == "__main__":
    main()
