"""The verbs of medssl as Python functions; the CLI and `medssl.__init__` call these."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medssl.pipelines import presets
from medssl.platform.config import PipelineConfig, load_config
from medssl.platform.errors import ConfigError

if TYPE_CHECKING:
    from medssl.modalities.base import Problem

# The training code (Lightning, stages) is imported inside the verbs that train, so that
# `medssl validate` starts quickly.


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
    from medssl.pipelines.runner import run_config

    return run_config(_config(paths, overrides), out)


def pretrain(paths: Any, overrides: Iterable[str] = (), out: str | Path | None = None) -> dict[str, Any]:
    """Only the pretraining stage (and its report)."""
    from medssl.pipelines.runner import run_config

    return run_config(_config(paths, overrides, ["stages=[pretrain, report]"]), out)


def probe(
    paths: Any, checkpoint: str | Path, overrides: Iterable[str] = (), out: str | Path | None = None
) -> dict[str, Any]:
    """Linear / kNN probes of a pretrained model folder against random init."""
    from medssl.pipelines.runner import run_config

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
    from medssl.pipelines.runner import run_config

    return run_config(_config(paths, overrides, extra), out)


def validate(path: str | Path, modality: str = "volume", preprocessing: dict[str, Any] | None = None) -> list[Problem]:
    """Every problem of a dataset (folder, manifest or array file); writes nothing."""
    import medssl.modalities  # noqa: F401  (registers the adapters)
    from medssl.platform.registry import MODALITIES

    config = PipelineConfig.model_validate(
        {"data": {"path": str(path), "modality": modality, "preprocessing": preprocessing or {}}}
    )
    if modality not in MODALITIES:
        raise ConfigError(f"--modality: unknown modality '{modality}'; available: {MODALITIES.names()}")
    cls = MODALITIES.get(modality)
    return cls(config.data.preprocessing).validate(str(path))


def reduce(
    data: str | Path,
    strategy: str = "dhash",
    threshold: float | None = None,
    params: dict[str, Any] | None = None,
    out: str | Path = "reduction",
    preprocessing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Reduce a volume dataset before pretraining: writes `<out>/kept.json` (the kept slices
    of every volume) and `<out>/reduction.png`; returns the summary.

    Example:
        >>> medssl.reduce("scans/", "dhash", threshold=6, out="reduced")["ratio"]  # doctest: +SKIP
    """
    from medssl.platform.reduction import build_reducer

    build_reducer(strategy, threshold, params)  # a bad setting fails before the heavy imports
    from medssl.pipelines.reduce import reduce_dataset

    return reduce_dataset(
        data, strategy, params or {}, out, threshold=threshold, preprocessing=preprocessing
    )


def load_model(folder: str | Path) -> tuple[dict[str, Any], Any]:
    """(state dict, model card) of a model folder; reads safetensors + JSON only."""
    from medssl.platform.checkpoint import load_model as read_model

    return read_model(folder)


def compare(
    runs: Sequence[str | Path], out: str | Path = "comparison", seeds: bool = False
) -> dict[str, Any]:
    """Merge the reports of finished runs into one (see `medssl compare`); with `seeds`, runs
    of the same pipeline are seeds and each result is their mean ± standard deviation.

    Example:
        >>> medssl.compare(["runs/gr", "runs/gd-local"], out="runs/compare")  # doctest: +SKIP
        >>> medssl.compare(["runs/a-s0", "runs/a-s1", "runs/a-s2"], seeds=True)  # doctest: +SKIP
    """
    from medssl.pipelines.compare import compare as do_compare

    return do_compare(runs, out, seeds=seeds)

