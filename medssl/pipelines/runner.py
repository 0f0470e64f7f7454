"""Runs a pipeline: one self-describing run folder, stages in order, resume after a kill."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from medssl.pipelines import finetune, stages
from medssl.pipelines.prepare import check_datasets, prepare_context
from medssl.pipelines.reduce import reduce_stage
from medssl.pipelines.report import write_collection_report, write_report
from medssl.platform.config import PipelineConfig, deep_merge, load_config, validate_config
from medssl.platform.engine.trainer import launch_world
from medssl.platform.io import atomic_write_text

log = logging.getLogger("medssl")

STAGE_FUNCTIONS = {
    "reduce": reduce_stage,
    "pretrain": stages.pretrain,
    "probe": stages.probe,
    "finetune": finetune.finetune,
    "evaluate": finetune.evaluate,
}


def default_run_dir(config: PipelineConfig) -> Path:
    """`runs/<name>-<config hash>`: the same config reruns (and resumes) in the same folder."""
    return Path("runs") / f"{config.name}-{config.config_hash()}"


def run_config(config: PipelineConfig, out: str | Path | None = None) -> dict[str, Any]:
    """Run every stage of `config` in the run folder `out` and return the report. A list of
    datasets in `data.path` runs them one after the other (see `run_datasets`)."""
    run_dir = Path(out) if out is not None else default_run_dir(config)
    if isinstance(config.data.path, list):
        return run_datasets(config, run_dir)
    if config.data.root:
        config = dataset_config(config, config.data.paths()[0], keep_name=True)
    return _run_dataset(config, run_dir)


def _run_dataset(config: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    rank, _ = launch_world()
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        atomic_write_text(
            run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False)
        )
    started = time.perf_counter()
    ctx = prepare_context(config, run_dir)
    print(
        f"medssl run '{config.name}' -> {run_dir}  ({len(ctx.train)} training items, "
        f"{len(ctx.holdout)} held out)",
        flush=True,
    )
    if "finetune" in config.stages and "evaluate" not in config.stages:
        print(
            "note: stages has finetune without evaluate: the fine-tuned models are saved but "
            "not scored on the held-out subjects; add evaluate after finetune to report them",
            flush=True,
        )
    for stage in config.stages:
        if stage in STAGE_FUNCTIONS:
            print(f"== {stage} ==", flush=True)
            STAGE_FUNCTIONS[stage](ctx)
    report = write_report(
        ctx, seconds=time.perf_counter() - started, write="report" in config.stages
    )
    return report


def dataset_config(config: PipelineConfig, path: str, keep_name: bool = False) -> PipelineConfig:
    """`config` for one dataset: `data.path` is that (root-joined) path and `data.root` unset;
    the dataset is named after its path unless `keep_name`."""
    data = {"path": path, "root": None, **({} if keep_name else {"name": None})}
    return validate_config(deep_merge(config.to_dict(), {"data": data}))


def run_datasets(config: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    """Every stage on each dataset of `data.path` in `<run_dir>/<dataset name>/` (each one
    resumes on its own), then one report over all of them in `run_dir`: every dataset's rows
    and, for more than one dataset, `average` rows (see `dataset_averages`)."""
    singles = [dataset_config(config, path) for path in config.data.paths()]
    check_datasets(singles)  # a missing or broken dataset at the end must not wait for the rest
    rank, _ = launch_world()
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        atomic_write_text(
            run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False)
        )
    started = time.perf_counter()
    reports = []
    for path, single in zip(config.data.paths(), singles, strict=True):
        name = single.data.dataset_name()
        print(f"=== dataset {name} ({path}) ===", flush=True)
        reports.append(_run_dataset(single, run_dir / name))
    return write_collection_report(
        config,
        run_dir,
        reports,
        seconds=time.perf_counter() - started,
        write="report" in config.stages,
    )


def run(
    paths: Sequence[str | Path] | str | Path,
    overrides: Iterable[str] = (),
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Load, stack and override pipeline YAMLs, then run them. Returns the report dict."""
    return run_config(load_config(paths, overrides), out)
