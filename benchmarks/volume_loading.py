"""Volume loading throughput: medssl's volume adapter (a memory-mapped preprocessing cache on disk)
against MONAI's LoadImaged + CacheDataset (a cache in RAM), on the same NIfTI files.

Measured for both: the first pass (read, RAS orientation, resampling, HU window, cache), epochs
of random fixed-size patches through a DataLoader, the cache's footprint, and a second process.

    python benchmarks/volume_loading.py --out volume_loading.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch

from medssl.modalities.base import Record
from medssl.modalities.volume.adapter import VolumeModality
from medssl.synthetic import write_cohort

#: CT files of the shared data folder used as the real-data case (MR is left out: HU window).
REAL_CT_FILES = ("example_ct_sm.nii.gz", "example_ct.nii.gz")
_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CPU = torch.device("cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds, not minutes)")
    p.add_argument("--n-subjects", type=int, default=24, help="phantom volumes to generate")
    p.add_argument("--data", type=Path, help="shared data folder (default: MEDSSL_TEST_DATA)")
    p.add_argument("--no-real", action="store_true", help="skip the TotalSegmentator CT files")
    p.add_argument("--spacing", type=float, nargs=3, default=(2.0, 2.0, 3.0), metavar="MM")
    p.add_argument("--hu-window", type=float, nargs=2, default=(-200.0, 300.0), metavar="HU")
    p.add_argument("--patch", type=int, nargs=3, default=(48, 48, 16), metavar="VOXELS")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=(0, 2), help="DataLoader workers")
    p.add_argument("--repeats", type=int, default=3, help="timed first passes and second runs")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per loader")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--second-run", choices=("medssl", "monai"), help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n_subjects, args.repeats, args.epochs = 3, 1, 1
        args.workers, args.no_real = (0,), args.no_real or args.data is None
    return args


def real_files(args: argparse.Namespace) -> list[Path]:
    """The real CT files when the shared data folder is there and wanted, else none."""
    if args.no_real:
        return []
    root = args.data or Path(os.environ.get("MEDSSL_TEST_DATA", str(_DEFAULT_DATA)))
    folder = root / "image3d" / "totalsegmentator"
    return [folder / name for name in REAL_CT_FILES if (folder / name).is_file()]


def make_cases(args: argparse.Namespace, spec: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    """(name, records) of each dataset measured; phantoms are listed with the adapter's scan."""
    cohort = tmp / "phantoms"
    write_cohort(cohort, n_subjects=args.n_subjects, dicom_subjects=0)
    begin = time.perf_counter()
    records = medssl_modality(spec).scan(cohort / "imagesTr")
    cases = [{"name": "phantoms", "records": records, "scan_s": time.perf_counter() - begin}]
    files = real_files(args)
    if files:
        real = [Record(subject_id=f.name.split(".")[0], image=str(f)) for f in files]
        cases.append({"name": "totalsegmentator_ct", "records": real, "scan_s": 0.0})
    return cases


def medssl_modality(spec: dict[str, Any]) -> VolumeModality:
    return VolumeModality(
        {
            "orientation": "RAS",
            "spacing": tuple(spec["spacing"]),
            "intensity": "hu_window",
            "hu_window": tuple(spec["hu_window"]),
            "patch_size": tuple(spec["patch"]),
        }
    )


def monai_transform(spec: dict[str, Any]) -> Any:
    """MONAI's dictionary chain doing what the adapter does; CacheDataset caches up to the crop."""
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        RandSpatialCropd,
        ScaleIntensityRanged,
        Spacingd,
        SpatialPadd,
    )

    lo, hi = spec["hu_window"]
    return Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS", labels=None),
            Spacingd("image", pixdim=tuple(spec["spacing"]), mode="bilinear"),
            ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
            RandSpatialCropd("image", roi_size=tuple(spec["patch"]), random_size=False),
            SpatialPadd("image", spatial_size=tuple(spec["patch"])),
        ]
    )


def monai_cache(records: list[Record], spec: dict[str, Any]) -> Any:
    from monai.data import CacheDataset

    data = [{"image": r.image} for r in records]
    # copy_cache=False is MONAI's documented setting when the random part only crops: the
    # cached volume is never written to, so the per-item deepcopy of the default is not needed.
    return CacheDataset(
        data,
        monai_transform(spec),
        cache_rate=1.0,
        num_workers=1,
        copy_cache=False,
        progress=False,
    )


def monai_cache_bytes(dataset: Any) -> int:
    """Bytes of the tensors CacheDataset holds in RAM (the cached volumes themselves)."""
    return sum(
        v.element_size() * v.numel()
        for item in dataset._cache
        for v in item.values()
        if isinstance(v, torch.Tensor)
    )


def compare_caches(prepared: Any, dataset: Any) -> dict[str, Any]:
    """How close the two preprocessed caches are: shapes, and mean intensity per volume."""
    shape_diff, mean_diff, same = 0, 0.0, 0
    for i in range(len(prepared)):
        ours = prepared.image(i)
        theirs = np.asarray(dataset._cache[i]["image"])
        delta = np.abs(np.subtract(ours.shape, theirs.shape))
        shape_diff = max(shape_diff, int(delta.max()))
        same += int(delta.max() == 0)
        mean_diff = max(mean_diff, abs(float(ours.mean()) - float(theirs.mean())))
    return {
        "volumes_with_identical_shape": same,
        "max_shape_difference_voxels": shape_diff,
        "max_mean_intensity_difference": mean_diff,
    }


def first_pass(
    case: dict[str, Any], spec: dict[str, Any], tmp: Path, repeats: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read + preprocess + cache, from nothing, `repeats` times each (after one warm-up)."""
    records, modality = case["records"], medssl_modality(spec)
    made: dict[str, Any] = {}

    def build_medssl() -> None:
        old = made.get("cache_dir")
        made["cache_dir"] = Path(tempfile.mkdtemp(prefix="medssl-cache-", dir=tmp))
        made["prepared"] = modality.prepare(records, made["cache_dir"])
        if old is not None:
            shutil.rmtree(old)

    def build_monai() -> None:
        made["monai"] = None  # let the previous cache go before the next one is built
        made["monai"] = monai_cache(records, spec)

    timings = harness.measure(
        {"medssl": build_medssl, "monai": build_monai}, CPU, warmup=1, repeats=repeats
    )
    n = len(records)
    result = {
        name: dict(timing, volumes_per_s=n / timing["median_s"]) for name, timing in timings.items()
    }
    result |= {
        "footprint": {
            "medssl_disk_bytes": harness.folder_bytes(made["cache_dir"]),
            "medssl_ram_bytes": 0,  # memory maps: pages live in the OS page cache, shared
            "monai_ram_bytes": monai_cache_bytes(made["monai"]),
        },
        "agreement": compare_caches(made["prepared"], made["monai"]),
    }
    return result, made


def _epoch(loader: Any, expected: tuple[int, ...]) -> None:
    for batch in loader:
        x = batch["x"] if "x" in batch else batch["image"]
        if tuple(x.shape[1:]) != expected:
            raise RuntimeError(f"loader gave patches of shape {tuple(x.shape)}, wanted {expected}")


def steady_state(made: dict, spec: dict[str, Any], args: argparse.Namespace, n: int) -> dict:
    """Epochs over the cached data producing random patches, per DataLoader worker count."""
    from monai.data import DataLoader as MonaiLoader
    from torch.utils.data import DataLoader

    modality = medssl_modality(spec)
    ours = modality.dataset(made["prepared"], range(n), "pretrain", seed=0)
    expected = (1, *spec["patch"])
    batch = min(args.batch_size, n)
    out: dict[str, Any] = {}
    for workers in args.workers:
        common = {"batch_size": batch, "shuffle": True, "num_workers": workers}
        # Persistent workers: steady state means the worker start-up is paid once, not per epoch.
        common["persistent_workers"] = workers > 0
        loaders = {
            "medssl": DataLoader(ours, collate_fn=modality.collate, **common),
            "monai": MonaiLoader(made["monai"], **common),
        }
        epochs = {
            name: (lambda loader=loader: _epoch(loader, expected))
            for name, loader in loaders.items()
        }
        timings = harness.measure(epochs, CPU, warmup=1, repeats=args.epochs)
        row: dict[str, Any] = {
            name: dict(timing, volumes_per_s=n / timing["median_s"])
            for name, timing in timings.items()
        }
        row["ratio_medssl_over_monai"] = (
            row["medssl"]["volumes_per_s"] / row["monai"]["volumes_per_s"]
        )
        out[f"workers_{workers}"] = row
        del loaders, epochs  # ends the persistent workers before the next worker count
    return out


def _child_run(impl: str, spec_file: Path, threads: int) -> tuple[float, float]:
    """(process wall seconds, build seconds) of one fresh process building `impl`'s dataset."""
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--second-run", impl, "--spec", str(spec_file)]
    begin = time.perf_counter()
    done = subprocess.run(
        [*command, "--threads", str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - begin
    return wall, float(json.loads(done.stdout.strip().splitlines()[-1])["build_s"])


def second_run(spec_file: Path, repeats: int, threads: int) -> dict[str, Any]:
    """A fresh process builds its dataset again: medssl reopens its cache, MONAI recomputes.

    The processes alternate (medssl, monai, medssl, ...) so both meet the same machine load.
    """
    runs: dict[str, list[tuple[float, float]]] = {"medssl": [], "monai": []}
    for _ in range(repeats):
        for impl, done in runs.items():
            done.append(_child_run(impl, spec_file, threads))
    out = {}
    for impl, done in runs.items():
        walls, builds = [w for w, _ in done], [b for _, b in done]
        out[impl] = {
            "startup_median_s": float(np.median(np.subtract(walls, builds))),
            "build_median_s": float(np.median(builds)),
            "build_s": builds,
            "process_median_s": float(np.median(walls)),
            "process_s": walls,
        }
    return out


def second_run_child(args: argparse.Namespace) -> None:
    """Inside the fresh process: build the dataset once, print the seconds it took as JSON."""
    spec = json.loads(args.spec.read_text())
    records = [Record(subject_id=s, image=i) for s, i in spec["records"]]
    if args.second_run == "monai":
        # Importing is start-up, kept outside the build time as medssl's imports are.
        import monai.data  # noqa: F401
        import monai.transforms  # noqa: F401

    begin = time.perf_counter()
    if args.second_run == "medssl":
        modality = medssl_modality(spec)
        prepared = modality.prepare(records, spec["cache_dir"])
        modality.dataset(prepared, range(len(records)), "pretrain", seed=0)
    else:
        monai_cache(records, spec)
    print(json.dumps({"build_s": time.perf_counter() - begin}))


def run_case(case: dict, spec: dict[str, Any], args: argparse.Namespace, tmp: Path) -> dict:
    n = len(case["records"])
    print(f"[{case['name']}] {n} volumes: first pass", flush=True)
    result, made = first_pass(case, spec, tmp, args.repeats)
    result["n_volumes"], result["scan_s"] = n, case["scan_s"]
    result["first_pass_ratio_medssl_over_monai"] = (
        result["medssl"]["volumes_per_s"] / result["monai"]["volumes_per_s"]
    )
    print(f"[{case['name']}] steady-state epochs", flush=True)
    result["epochs"] = steady_state(made, spec, args, n)
    print(f"[{case['name']}] second process", flush=True)
    spec_file = tmp / f"{case['name']}-spec.json"
    child_spec = dict(spec, cache_dir=str(made["cache_dir"]))
    child_spec["records"] = [[r.subject_id, r.image] for r in case["records"]]
    spec_file.write_text(json.dumps(child_spec))
    result["second_run"] = second_run(spec_file, args.repeats, args.threads)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.second_run:
        second_run_child(args)
        return {}
    spec = {
        "spacing": list(args.spacing),
        "hu_window": list(args.hu_window),
        "patch": list(args.patch),
    }
    result: dict[str, Any] = {
        "benchmark": "volume_loading",
        "environment": harness.environment(CPU),
        "parameters": dict(
            spec,
            orientation="RAS",
            batch_size=args.batch_size,
            workers=list(args.workers),
            repeats=args.repeats,
            epochs=args.epochs,
            n_subjects=args.n_subjects,
            quick=args.quick,
            monai_cache_workers=1,
        ),
        "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="medssl-bench-") as folder:
        tmp = Path(folder)
        for case in make_cases(args, spec, tmp):
            result["cases"][case["name"]] = run_case(case, spec, args, tmp)
    harness.write_json(args.out, result)
    print(json.dumps(result["cases"], indent=1, default=str)[:4000])
    return result


if __name__ == "__main__":
    main()
