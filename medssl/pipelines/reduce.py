"""Dataset reduction as a pipeline step: the axial slices of every prepared volume, in
physical order, go through a reducer; `kept.json` and `reduction.png` land in the output."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medssl.modalities.base import Modality
from medssl.pipelines.context import RunContext, build_modality
from medssl.pipelines.prepare import refuse_problems, validate_data
from medssl.platform.config import PipelineConfig
from medssl.platform.engine.progress import counting
from medssl.platform.engine.trainer import launch_world
from medssl.platform.errors import ConfigError, DataError
from medssl.platform.io import atomic_write_json, save_figure
from medssl.platform.reduction import Reducer, build_reducer, write_kept_index
from medssl.platform.reduction.kept_index import summarize
from medssl.platform.registry import MODALITIES

log = logging.getLogger("medssl")

KEPT_FILE = "kept.json"
PLOT_FILE = "reduction.png"
#: How long rank 0 waits for the other ranks' parts (and they for the merged file).
SHARD_TIMEOUT_S = 4 * 3600.0


# ----------------------------------------------------------------------------- slices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled or total == 0:
        yield lambda: None
        return
    with counting("reducing volumes", total, unit="volume") as advance:
        yield advance


def reduce_volumes(
    modality: Modality,
    prepared: Any,
    indices: Sequence[int],
    reducer: Reducer,
    device: torch.device,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """{Record.image: {"slices": N, "kept": [...], "axis": k}} for the prepared records
    `indices` (their slices in physical order, from the modality), each reduced on its own."""
    out: dict[str, dict[str, Any]] = {}
    with _progress(len(indices), progress) as advance:
        for i in indices:
            slices, axis, positions = modality.slices_for_reduction(prepared, i)
            chosen = reducer.select(slices.to(device))
            kept = sorted(positions[j] for j in chosen)
            out[prepared.records[i].image] = {"slices": len(positions), "kept": kept, "axis": axis}
            advance()
    return out


# ----------------------------------------------------------------------------- the verb


def _reduce_config(
    data: PipelineConfig | str | Path,
    strategy: str | None,
    params: Mapping[str, Any] | None,
    threshold: float | None,
    preprocessing: Mapping[str, Any] | None,
) -> PipelineConfig:
    if isinstance(data, PipelineConfig):
        config = data.model_copy(deep=True)
    else:
        config = PipelineConfig.model_validate(
            {"data": {"path": str(data), "preprocessing": dict(preprocessing or {})}}
        )
    if strategy is not None:
        config.reduce.strategy = strategy
    if params is not None:
        config.reduce.kwargs = dict(params)
    if threshold is not None:
        config.reduce.threshold = threshold
    return config


def build_config_reducer(config: PipelineConfig) -> Reducer:
    """The reducer of `config.reduce`, refused before any data is read when unusable here."""
    cfg = config.reduce
    reducer = build_reducer(cfg.strategy, cfg.threshold, cfg.kwargs)
    if reducer.name == "embedding":
        raise ConfigError(
            "reduce.strategy: 'embedding' compares slice embeddings that a pipeline cannot "
            "compute yet; use dhash, ssim, mutual_information or every_nth here, or call "
            "medssl.platform.reduction.Embedding().select(embeddings) on your own"
        )
    if not MODALITIES.get(config.data.modality).reducible:
        raise ConfigError(
            f"data.modality: reduction works on slices of volumes, which modality "
            f"'{config.data.modality}' does not have; remove the reduce stage"
        )
    return reducer


def fingerprint(reducer: Reducer, keys: Sequence[str], contract: Mapping[str, Any]) -> str:
    """Identifies one reduction job: strategy, settings, preprocessing and volume keys."""
    blob = json.dumps(
        {
            "strategy": reducer.name,
            "params": reducer.params(),
            "keys": sorted(keys),
            "prep": contract,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def reduce_dataset(
    data: PipelineConfig | str | Path,
    strategy: str | None = None,
    params: Mapping[str, Any] | None = None,
    out_dir: str | Path = "reduction",
    *,
    threshold: float | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    rank: int | None = None,
    world: int | None = None,
    wait: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Reduce every volume of a dataset and write `<out_dir>/kept.json` and `reduction.png`.

    `data` is a dataset path (folder, manifest or array file) or a PipelineConfig (its
    `data` and `reduce` sections; `strategy`, `params` and `threshold` override the latter).
    Under torchrun each rank reduces its share of the volumes and rank 0 merges the parts;
    `rank`/`world` override the environment, `wait=False` lets a rank > 0 return without
    waiting for the merged file. Returns the summary (this rank's share on ranks > 0).

    Example:
        >>> summary = reduce_dataset("scans/", "dhash", threshold=6, out_dir="red")  # doctest: +SKIP
        >>> summary["ratio"]  # doctest: +SKIP
    """
    config = _reduce_config(data, strategy, params, threshold, preprocessing)
    reducer = build_config_reducer(config)
    if not config.data.path:
        raise ConfigError("data.path: no dataset given; pass a folder, manifest or array file")
    out = Path(out_dir)
    refuse_problems(str(config.data.path), validate_data(config))
    modality = build_modality(config)
    records = modality.scan(config.data.path)
    cache = (
        Path(config.data.cache_dir) if config.data.cache_dir else out.resolve().parent / ".cache"
    )
    prepared = modality.prepare(records, cache)
    return reduce_prepared(
        modality,
        prepared,
        reducer,
        out,
        device=device,
        rank=rank,
        world=world,
        wait=wait,
        progress=progress,
    )


def reduce_prepared(
    modality: Modality,
    prepared: Any,
    reducer: Reducer,
    out: Path,
    *,
    device: str | torch.device = "auto",
    rank: int | None = None,
    world: int | None = None,
    wait: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """`reduce_dataset` on an already prepared cache (what the reduce stage calls)."""
    started = time.perf_counter()
    env_rank, env_world = launch_world()
    rank = env_rank if rank is None else rank
    world = env_world if world is None else world
    keys = [r.image for r in prepared.records]
    if len(set(keys)) != len(keys):
        raise DataError("the dataset lists an image twice; remove the duplicate rows")
    job = fingerprint(reducer, keys, modality.contract())
    mine = [i for i in range(len(keys)) if i % world == rank]
    entries = reduce_volumes(modality, prepared, mine, reducer, resolve_device(device), progress)
    out.mkdir(parents=True, exist_ok=True)
    if world > 1:
        part = {"fingerprint": job, "rank": rank, "world": world, "volumes": entries}
        atomic_write_json(_part_path(out, rank, world), part)
        if rank != 0:
            if wait:
                wait_for_kept(out / KEPT_FILE, job)
            return summarize(entries, time.perf_counter() - started)
        entries = _merge_parts(out, world, job)
    document = write_kept_index(
        out / KEPT_FILE,
        reducer.name,
        reducer.params(),
        entries,
        seconds=time.perf_counter() - started,
        extra={"fingerprint": job},
    )
    plot_example(out / PLOT_FILE, document, modality, prepared)
    return document["summary"]


def _part_path(out: Path, rank: int, world: int) -> Path:
    return out / f"kept.part-{rank:04d}-of-{world:04d}.json"


def _merge_parts(out: Path, world: int, job: str) -> dict[str, dict[str, Any]]:
    """Rank 0: wait for every rank's part of this job, then join them (and delete them)."""
    deadline = time.monotonic() + SHARD_TIMEOUT_S
    merged: dict[str, dict[str, Any]] = {}
    for r in range(world):
        path = _part_path(out, r, world)
        while True:
            part = _read_json(path)
            if part is not None and part.get("fingerprint") == job:
                break
            if time.monotonic() > deadline:
                raise DataError(f"{path}: rank {r} never wrote its part; check that rank's log")
            time.sleep(0.2)
        merged.update(part["volumes"])
    for r in range(world):
        _part_path(out, r, world).unlink(missing_ok=True)
    return merged


def wait_for_kept(path: Path, job: str) -> None:
    """Ranks > 0: wait until rank 0 has written the kept-index of this job."""
    deadline = time.monotonic() + SHARD_TIMEOUT_S
    while (doc := _read_json(path)) is None or doc.get("fingerprint") != job:
        if time.monotonic() > deadline:
            raise DataError(f"{path}: rank 0 never wrote the merged kept-index; check its log")
        time.sleep(0.2)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def reduce_stage(ctx: RunContext) -> None:
    """The `reduce` stage of a run: `<run>/reduce/kept.json` (+ plot), then marked done."""
    out = ctx.run_dir / "reduce"
    if ctx.state.is_done("reduce") and (out / KEPT_FILE).is_file():
        log.info("reduce: already done in %s", out)
        return
    reducer = build_config_reducer(ctx.config)
    summary = reduce_prepared(
        ctx.modality,
        ctx.prepared,
        reducer,
        out,
        progress=ctx.config.trainer.progress_bar,
    )
    print(
        f"[reduce] {reducer.name}: kept {summary['slices_kept']} of {summary['slices_in']} "
        f"slices ({summary['ratio']:.0%}) -> {out / KEPT_FILE}",
        flush=True,
    )
    ctx.state.mark_done("reduce")


# ----------------------------------------------------------------------------- the plot


def plot_example(
    path: Path, document: Mapping[str, Any], modality: Modality, prepared: Any
) -> None:
    """Kept fraction per volume, and kept vs dropped slices of the volume with most slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volumes = document["volumes"]
    if not volumes:
        return
    fractions = [len(v["kept"]) / v["slices"] for v in volumes.values() if v["slices"]]
    key = max(sorted(volumes), key=lambda k: volumes[k]["slices"])
    index = next(i for i, r in enumerate(prepared.records) if r.image == key)
    slices, _, positions = modality.slices_for_reduction(prepared, index)
    kept = set(volumes[key]["kept"])
    shown = _middle_run(len(positions), 12)
    fig = plt.figure(figsize=(12, 6.5), layout="constrained")
    grid = fig.add_gridspec(3, len(shown), height_ratios=[2.2, 0.35, 1.4])
    ax = fig.add_subplot(grid[0, :])
    ax.hist(fractions, bins=min(30, max(5, len(fractions))), range=(0, 1), color="#4c72b0")
    summary = document["summary"]
    ax.set_title(
        f"{document['strategy']}: {summary['slices_kept']} of {summary['slices_in']} slices kept "
        f"({summary['ratio']:.0%}) over {summary['volumes']} volumes"
    )
    ax.set_xlabel("kept fraction per volume")
    ax.set_ylabel("volumes")
    band = fig.add_subplot(grid[1, :])
    flags = np.array([[positions[j] in kept for j in range(len(positions))]], dtype=float)
    band.imshow(flags, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest")
    band.set_yticks([])
    band.set_xlabel(f"slices of {Path(key).name}, inferior -> superior (green kept, red dropped)")
    for col, j in enumerate(shown):
        cell = fig.add_subplot(grid[2, col])
        cell.imshow(slices[j].numpy(), cmap="gray")
        is_kept = positions[j] in kept
        cell.set_title(f"z={positions[j]}", fontsize=8, color="green" if is_kept else "red")
        for side in cell.spines.values():
            side.set_edgecolor("green" if is_kept else "red")
            side.set_linewidth(2.5)
        cell.set_xticks([])
        cell.set_yticks([])
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def _middle_run(n: int, count: int) -> list[int]:
    """`count` consecutive slice positions around the middle: runs of near-duplicates show."""
    count = min(n, count)
    first = max(0, n // 2 - count // 2)
    return list(range(first, first + count))


__all__ = ["KEPT_FILE", "reduce_dataset", "reduce_prepared", "reduce_stage"]
