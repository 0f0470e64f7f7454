"""Shared measuring kit of the benchmark scripts: warm-up and median timing, the device and
versions a result was taken on, and the JSON it is written to.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

# Run from a checkout without `pip install -e .`: the scripts then still find the package.
if importlib.util.find_spec("medssl") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (the platform's processor elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def versions() -> dict[str, str]:
    import monai

    import medssl

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "medssl": getattr(medssl, "__version__", "unknown"),
    }


def environment(device: torch.device | None = None) -> dict[str, Any]:
    """Where and when a result was measured: device names, versions, load, date."""
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cuda_available": torch.cuda.is_available(),
        "versions": versions(),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    if device is not None:
        env["device"] = str(device)
    return env


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of `fn` takes; CUDA events bracket it on a GPU so queued kernels count."""
    if device.type == "cuda":
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        _synchronise(device)
        start.record()
        fn()
        stop.record()
        _synchronise(device)
        return start.elapsed_time(stop) / 1000.0
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def measure(
    fns: Mapping[str, Callable[[], Any]],
    device: torch.device,
    warmup: int = 1,
    repeats: int = 5,
) -> dict[str, dict[str, Any]]:
    """Time each named callable: `warmup` untimed rounds, then `repeats` timed rounds.

    Rounds interleave the callables (a, b, a, b, ...) so that a load that comes and goes on a
    shared machine falls on all of them alike. Per name: the median, all times and, on CUDA,
    the peak memory allocated during its own calls.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    peaks = dict.fromkeys(fns, 0)
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                _synchronise(device)
                torch.cuda.reset_peak_memory_stats(device)
            times[name].append(time_once(fn, device))
            if device.type == "cuda":
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated(device))
    out: dict[str, dict[str, Any]] = {}
    for name, values in times.items():
        out[name] = {"median_s": statistics.median(values), "times_s": values}
        if device.type == "cuda":
            out[name]["max_memory_allocated_bytes"] = peaks[name]
    return out


def write_json(path: str | Path | None, result: dict[str, Any]) -> None:
    """Write `result` as indented JSON to `path` (parents created); nothing when path is None."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


def folder_bytes(root: str | Path) -> int:
    """Total size of the regular files under `root` (what a cache occupies on disk)."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
