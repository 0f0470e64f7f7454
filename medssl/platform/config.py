"""The pipeline YAML schema: load several files, stack them, apply `key.path=value`
overrides, validate with errors that name the key path, and dump the resolved config.
The schema-free machinery (YAML, merging, overrides, error lines) is `config_stack`;
its public names are importable from here too, the one config module callers need."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medssl.platform.config_stack import (
    apply_override,
    deep_merge,
    format_validation_error,
    read_yaml,
    validate_section,
)
from medssl.platform.errors import ConfigError

__all__ = [
    "FORECAST_HORIZONS",
    "STAGES",
    "Budget",
    "DataConfig",
    "EncoderConfig",
    "FinetuneConfig",
    "OptimConfig",
    "PipelineConfig",
    "PretrainConfig",
    "PretrainPhase",
    "ProbeConfig",
    "ReduceConfig",
    "Section",
    "Stage",
    "TrainerConfig",
    "apply_override",
    "deep_merge",
    "dump_config",
    "format_validation_error",
    "load_config",
    "read_yaml",
    "validate_config",
    "validate_section",
]

STAGES = ("reduce", "pretrain", "probe", "finetune", "evaluate", "report")
Stage = Literal["reduce", "pretrain", "probe", "finetune", "evaluate", "report"]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """Where the data is and how the modality prepares it."""

    modality: str = "volume"
    path: str | list[str] | None = Field(
        None,
        description="folder, manifest (.csv/.json) or array file; a list runs the stages on "
        "each dataset in turn (`medssl run` only), reported together",
    )
    root: str | None = Field(
        None, description="folder that relative entries of data.path are read from"
    )
    name: str | None = Field(None, description="dataset name in reports; default: path stem")
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    cache_dir: str | None = None
    num_workers: int = Field(0, ge=0)
    num_classes: int | None = Field(None, ge=2)

    @field_validator("path")
    @classmethod
    def _paths(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value or any(not str(p).strip() for p in value):
                raise ValueError("a list of datasets needs at least one non-empty path")
            names = [_stem(p) for p in value]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(
                    f"lists datasets with the same name {twice}; each one reports (and runs) "
                    "under its file or folder name, so give distinct ones"
                )
        return value

    def paths(self) -> list[str]:
        """Every dataset path, relative ones joined to `root`."""
        raw = self.path if isinstance(self.path, list) else [self.path] if self.path else []
        return [str(Path(self.root) / p) if self.root else p for p in raw]

    def dataset_name(self) -> str:
        if self.name:
            return self.name
        if isinstance(self.path, list):
            return f"{len(self.path)} datasets"
        if self.path:
            return _stem(self.path)
        return "dataset"


def _stem(path: str) -> str:
    """A dataset's name from its path: `ucr/ArrowHead` -> ArrowHead, `ETTh2.csv` -> ETTh2."""
    p = Path(path)
    stem = p.name.split(".")[0] if p.suffix else p.name
    # `data/ct/manifest.csv` is the dataset "ct", not "manifest".
    return p.parent.name if stem in ("manifest", "dataset") and p.parent.name else stem


class EncoderConfig(Section):
    name: str | None = Field(None, description="default: the modality's default encoder")
    spatial_dims: Literal[1, 2, 3] = Field(3, description="1: series, 2: images or slices")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class OptimConfig(Section):
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)


class ReduceConfig(Section):
    """Dataset reduction before pretraining (Wolf et al. 2024, "Less is More"): a registered strategy,
    its threshold, and its other settings (`kwargs`, checked by the strategy itself)."""

    strategy: str = Field("dhash", description="dhash, ssim, mutual_information, every_nth")
    threshold: float | None = Field(None, description="default: the strategy's own")
    kwargs: dict[str, Any] = Field(default_factory=dict)


def _has_name(value: dict[str, Any]) -> dict[str, Any]:
    if "name" not in value:
        raise ValueError("needs a 'name' (e.g. name: simclr)")
    return value


class PretrainPhase(OptimConfig):
    """A later phase of a stage-wise schedule: its method and its own optimisation settings
    (e.g. the local stage after the global one, Chaitanya et al. 2020)."""

    method: dict[str, Any]
    checkpoint_every_n_steps: int = Field(25, ge=1)
    label: str | None = Field(None, description="this phase's name in reports; default: method")

    _name = field_validator("method")(classmethod(lambda cls, v: _has_name(v)))


class PretrainConfig(OptimConfig):
    method: dict[str, Any] = Field(default_factory=lambda: {"name": "simclr"})
    checkpoint_every_n_steps: int = Field(25, ge=1)
    then: list[PretrainPhase] = Field(
        default_factory=list,
        description="further phases trained in order on the same encoder (stage-wise schedule)",
    )
    label: str | None = Field(
        None,
        description="name of this (first) phase in reports; default: the method's name. "
        "A multi-phase init is named by its phases' labels joined by '+'",
    )
    from_checkpoint: str | None = Field(
        None, description="a model folder to probe/fine-tune instead of pretraining here"
    )

    _name = field_validator("method")(classmethod(lambda cls, v: _has_name(v)))

    def phases(self) -> list[OptimConfig]:
        """Every phase in order: this section itself, then `then`."""
        return [self, *self.then]

    def init_label(self, phases: int | None = None) -> str:
        """How the encoder after the first `phases` phases (all by default) is named."""
        chosen = self.phases()[: phases or None]
        return "+".join(p.label or str(p.method["name"]) for p in chosen)  # type: ignore[attr-defined]


#: A label budget: a whole number counts labelled subjects (`4`), a float in (0, 1] is a
#: share of them (`0.1`; `1.0` is all of them).
Budget = int | float


def _check_budgets(budgets: list[Budget]) -> list[Budget]:
    for b in budgets:
        if (isinstance(b, int) and b < 1) or (isinstance(b, float) and not 0 < b <= 1):
            raise ValueError(
                f"label budget {b!r} is neither a whole number of labelled subjects (>= 1) "
                "nor a fraction in (0, 1] such as 0.1"
            )
    if not budgets:
        raise ValueError("needs at least one label budget")
    return budgets


class FinetuneConfig(OptimConfig):
    task: Literal["segmentation", "classification"] = "segmentation"
    label_budgets: list[Budget] = Field(default_factory=lambda: [1.0])
    inits: list[str] = Field(
        default_factory=lambda: ["pretrained", "scratch"],
        description="pretrained (after every phase), phase<k> (after the first k phases of a "
        "stage-wise pretraining) or scratch",
    )
    roi_size: list[int] | None = Field(None, description="sliding window; default patch_size")
    batch_size: int = Field(2, ge=1)
    epochs: int = Field(20, ge=1)
    checkpoint_every_n_steps: int = Field(50, ge=1)
    validation_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of the labelled subjects held back to pick the best checkpoint "
        "(0: keep the last one)",
    )
    eval_every_n_steps: int = Field(50, ge=1, description="validation interval when selecting")
    freeze_encoder_steps: int = Field(
        0, ge=0, description="train only the head (and decoder) first: linear probe, then fine-tune"
    )
    repeats: int = Field(
        1, ge=1, description="runs per (init, budget) with seeds seed, seed+1, ...; mean and std"
    )

    _budgets = field_validator("label_budgets")(_check_budgets)

    @field_validator("inits")
    @classmethod
    def _inits(cls, inits: list[str]) -> list[str]:
        for init in inits:
            if init not in ("pretrained", "scratch") and not (
                init.startswith("phase") and init[5:].isdigit() and int(init[5:]) >= 1
            ):
                raise ValueError(
                    f"init '{init}' is not one of pretrained, scratch or phase<k> (e.g. phase1)"
                )
        return inits


#: TS2Vec's forecasting horizons (steps ahead) for hourly ETT data.
FORECAST_HORIZONS = [24, 48, 168, 336, 720]


class ProbeConfig(Section):
    """Frozen-encoder probes. `linear` / `knn`: logistic regression / kNN on global features;
    `svm`: TS2Vec's RBF SVM (C by cross-validation on train); `forecast`: TS2Vec's ridge
    forecast from causal sliding representations, one result per horizon in `horizons`;
    `zeroshot` / `retrieval` (image-text methods): classification from the `prompts` of each
    class, and Recall@1/5/10 between held-out images and their reports."""

    kinds: list[Literal["linear", "knn", "svm", "forecast", "zeroshot", "retrieval"]] = Field(
        default_factory=lambda: ["linear", "knn"]
    )
    prompts: dict[int, list[str]] = Field(
        default_factory=dict,
        description="zeroshot probe: class label -> the prompts that describe it",
    )
    horizons: list[int] = Field(
        default_factory=lambda: list(FORECAST_HORIZONS),
        description="forecast probe: steps ahead to predict",
    )
    forecast_window: int = Field(200, ge=0, description="forecast probe: past steps encoded")
    label_budgets: list[Budget] = Field(default_factory=lambda: [1.0])
    inits: list[Literal["pretrained", "random"]] = Field(
        default_factory=lambda: ["pretrained", "random"]
    )
    batch_size: int = Field(16, ge=1)
    knn_k: int = Field(20, ge=1)
    target: Literal["auto", "classification", "regression"] = Field(
        "auto",
        description="auto: regression when labels are not whole numbers or take more than "
        "20 values (e.g. age), classification otherwise",
    )

    _budgets = field_validator("label_budgets")(_check_budgets)

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, value: list[int]) -> list[int]:
        if not value or any(h < 1 for h in value):
            raise ValueError(f"needs at least one horizon, each >= 1 step; got {value}")
        return value

    @model_validator(mode="after")
    def _prompts(self) -> ProbeConfig:
        if "zeroshot" in self.kinds:
            described = [k for k, texts in self.prompts.items() if any(t.strip() for t in texts)]
            if len(described) < 2 or sorted(described) != list(range(len(self.prompts))):
                raise ValueError(
                    "zeroshot needs probe.prompts for the class labels 0, 1, ... in order, "
                    "each with a prompt, e.g. {0: ['no pneumonia'], 1: ['pneumonia']}"
                )
        return self


class TrainerConfig(Section):
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    precision: Literal[
        "auto", "64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"
    ] = Field("auto", description="auto: bf16-mixed on GPU, 32-true on CPU")
    log_every_n_steps: int = Field(5, ge=1)
    progress_bar: bool = True


class PipelineConfig(Section):
    """The whole pipeline. Every section has defaults; `data.path` is needed to run."""

    name: str = "pipeline"
    seed: int = Field(0, ge=0, lt=2**31, description="numpy and torch take seeds >= 0")
    stages: list[Stage] = Field(default_factory=lambda: ["pretrain", "probe", "report"])
    data: DataConfig = Field(default_factory=DataConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    reduce: ReduceConfig = Field(default_factory=ReduceConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    @field_validator("stages")
    @classmethod
    def _ordered(cls, stages: list[str]) -> list[str]:
        if len(set(stages)) != len(stages):
            raise ValueError(f"lists a stage twice: {stages}")
        order = [STAGES.index(s) for s in stages]
        if order != sorted(order):
            raise ValueError(f"must follow the order {list(STAGES)}; got {stages}")
        return stages

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# ----------------------------------------------------------------------------- loading


def load_config(
    paths: Sequence[str | Path] | str | Path | None = None,
    overrides: Iterable[str] = (),
    base: Mapping[str, Any] | None = None,
) -> PipelineConfig:
    """Stack YAML files (later ones win), apply overrides, and validate."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    # Start from the schema's defaults so that an override inside a default section
    # (pretrain.method.temperature=0.2) keeps the rest of it (the method's name).
    raw: dict[str, Any] = deep_merge(PipelineConfig().to_dict(), dict(base or {}))
    for path in paths or []:
        raw = deep_merge(raw, read_yaml(path))
    for override in overrides:
        raw = apply_override(raw, override)
    return validate_config(raw)


def validate_config(raw: Mapping[str, Any]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, PipelineConfig)) from None


def dump_config(config: PipelineConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
