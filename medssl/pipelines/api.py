"""The verbs of medssl as Python functions; the CLI and `medssl.__init__` call these."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medssl.modalities.base import Problem
from medssl.pipelines import presets
from medssl.pipelines.context import build_modality
from medssl.pipelines.runner import run_config
from medssl.platform.checkpoint import load_model as _load_model
from medssl.platform.config import PipelineConfig, load_config


def _config(
    paths: Sequence[str | Path] | str | Path, overrides: Iterable[str], extra: Iterable[str] = ()
) -> PipelineConfig:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    resolved = [presets.resolve(str(p)) for p in paths]
    return load_config(resolved, [*overrides, *extra])


def run(
    paths: Sequence[str | Path] | str | Path,
    overrides: Iterable[str] = (),
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Run a pipeline YAML (several stack, later wins; `key.path=value` overrides).

    Example:
        >>> report = medssl.run("adrenal3d-simclr", ["data.path=adrenal.npz"])  # doctest: +SKIP
        >>> [r for r in report["results"] if r["metric"] == "auroc"]  # doctest: +SKIP
    """
    return run_config(_config(paths, overrides), out)


def pretrain(paths: Any, overrides: Iterable[str] = (), out: str | Path | None = None) -> dict[str, Any]:
    """Only the pretraining stage (and its report)."""
    return run_config(_config(paths, overrides, ["stages=[pretrain, report]"]), out)


def probe(
    paths: Any, checkpoint: str | Path, overrides: Iterable[str] = (), out: str | Path | None = None
) -> dict[str, Any]:
    """Linear / kNN probes of a pretrained model folder against random init."""
    extra = ["stages=[probe, report]", f"pretrain.from_checkpoint={checkpoint}"]
    return run_config(_config(paths, overrides, extra), out)


def finetune(
    paths: Any,
    checkpoint: str | Path | None = None,
    overrides: Iterable[str] = (),
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Fine-tune (pretrained vs scratch at every label budget) and evaluate on the hold-out."""
    extra = ["stages=[finetune, evaluate, report]"]
    if checkpoint is not None:
        extra.append(f"pretrain.from_checkpoint={checkpoint}")
    else:
        extra.append("finetune.inits=[scratch]")
    return run_config(_config(paths, overrides, extra), out)


def validate(path: str | Path, modality: str = "volume", preprocessing: dict[str, Any] | None = None) -> list[Problem]:
    """Every problem of a dataset (folder, manifest or array file); writes nothing."""
    config = PipelineConfig.model_validate(
        {"data": {"path": str(path), "modality": modality, "preprocessing": preprocessing or {}}}
    )
    return build_modality(config).validate(str(path))


def load_model(folder: str | Path) -> tuple[dict[str, Any], Any]:
    """(state dict, model card) of a model folder; reads safetensors + JSON only."""
    return _load_model(folder)
