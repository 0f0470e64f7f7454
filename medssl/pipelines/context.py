"""What every stage of a run shares: the config, the run folder and its saved state, the
modality with its prepared data, the subject-level split, and builders for models and loaders."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

import medssl.modalities  # noqa: F401  (registers the adapters)
import medssl.pipelines.tasks  # noqa: F401  (registers the tasks)
from medssl.modalities.base import Modality, Purpose, Record
from medssl.modalities.loaders import LoaderRequest, item_loader
from medssl.pipelines.preflight import check_batch_size, check_input_sizes
from medssl.platform.batch import BatchSpec
from medssl.platform.config import PipelineConfig, validate_section
from medssl.platform.encoders import Encoder, build_encoder, check_encoder
from medssl.platform.engine.trainer import launch_world
from medssl.platform.errors import ConfigError
from medssl.platform.io import atomic_write_text
from medssl.platform.registry import ENCODERS, METHODS, MODALITIES

log = logging.getLogger("medssl")


def build_modality(config: PipelineConfig) -> Modality:
    try:
        cls = MODALITIES.get(config.data.modality)
    except KeyError as exc:
        raise ConfigError(f"data.modality: {exc.args[0]}") from None
    prep = validate_section(cls.Preprocessing, config.data.preprocessing, "data.preprocessing")
    return cls(prep, encoder_dims=config.encoder.spatial_dims)


def phase_key(phase: int) -> str:
    """Where a pretraining phase's method is set in the config."""
    return "pretrain.method" if phase == 0 else f"pretrain.then.{phase - 1}.method"


def phase_folder(run_dir: Path, config: PipelineConfig, phase: int) -> Path:
    """Where a pretraining phase writes its weights and checkpoints: `<run>/pretrain`, or
    `<run>/pretrain/phase<k>-<method>` when there are several phases."""
    phases = config.pretrain.phases()
    out = run_dir / "pretrain"
    if len(phases) == 1:
        return out
    return out / f"phase{phase + 1}-{phases[phase].method['name']}"  # type: ignore[attr-defined]


def method_class(config: PipelineConfig, phase: int = 0) -> Any:
    name = config.pretrain.phases()[phase].method["name"]  # type: ignore[attr-defined]
    try:
        return METHODS.get(name)
    except KeyError as exc:
        raise ConfigError(f"{phase_key(phase)}.name: {exc.args[0]}") from None


def check_compatibility(config: PipelineConfig) -> None:
    """Before any data is read: the modality's own settings for the run's stages, method x
    modality for every pretraining phase (each phase's settings, the batch fields and the
    grouping it needs, the smallest batch it trains on), the phase inits fine-tuning asks for,
    and the input sizes the config fixes (`preflight`)."""
    modality = build_modality(config)
    modality.check_run(config.stages)
    if {"pretrain", "probe", "finetune"} & set(config.stages):
        encoder = config.encoder
        name = encoder.name or modality.default_encoder
        check_encoder(name, encoder.spatial_dims, encoder.kwargs)
    phases = config.pretrain.phases()
    if "finetune" in config.stages:
        for init in config.finetune.inits:
            if init.startswith("phase") and int(init[5:]) > len(phases):
                raise ConfigError(
                    f"finetune.inits: '{init}' asks for phase {init[5:]} but pretraining has "
                    f"{len(phases)} phase(s); use phase1..phase{len(phases)} or pretrained"
                )
    trained = range(len(phases)) if "pretrain" in config.stages else range(0)
    for phase in trained:
        cls, settings = method_settings(config, phase)
        spec = cls.batch_spec(settings)
        modality.check_batches(cls.name, spec, phase_key(phase))
        check_batch_size(phase_key(phase), phases[phase].batch_size, cls.name, spec)
        # Views are warped to output_size: one side per spatial axis of the encoder's input.
        size = getattr(getattr(settings, "augment", None), "output_size", None)
        dims = config.encoder.spatial_dims
        if size is not None and len(size) != dims:
            raise ConfigError(
                f"{phase_key(phase)}.augment.output_size: {list(size)} has {len(size)} sides "
                f"but encoder.spatial_dims is {dims}; give {dims} sides or leave it unset"
            )
    check_input_sizes(config, modality, [(phase_key(k), *method_settings(config, k)) for k in trained])


def method_settings(config: PipelineConfig, phase: int = 0) -> tuple[Any, Any]:
    """(method class, its validated Config) of a pretraining phase; a bad key raises
    ConfigError naming it."""
    cls = method_class(config, phase)
    options = {k: v for k, v in config.pretrain.phases()[phase].method.items() if k != "name"}  # type: ignore[attr-defined]
    return cls, validate_section(cls.Config, options, phase_key(phase))


@dataclass
class RunState:
    """Which stages (and sub-runs) finished, persisted in `state.json` for resume."""

    path: Path
    config_hash: str
    done: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, run_dir: Path, config_hash: str) -> RunState:
        path = run_dir / "state.json"
        if not path.is_file():
            return cls(path, config_hash)
        saved = json.loads(path.read_text())
        if saved.get("config_hash") != config_hash:
            raise ConfigError(
                f"{run_dir}: this run folder holds a run of a different config "
                f"(hash {saved.get('config_hash')}, now {config_hash}); pass another --out "
                "or delete the folder"
            )
        return cls(path, config_hash, list(saved.get("done", [])), list(saved.get("rows", [])))

    def is_done(self, key: str) -> bool:
        return key in self.done

    def mark_done(self, key: str, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows = [r for r in self.rows if r.get("_key") != key]
        self.rows += [{**r, "_key": key} for r in rows or []]
        if key not in self.done:
            self.done.append(key)
        if launch_world()[0] == 0:
            payload = {"config_hash": self.config_hash, "done": self.done, "rows": self.rows}
            atomic_write_text(self.path, json.dumps(payload, indent=1))

    def results(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "_key"} for r in self.rows]


@dataclass
class RunContext:
    config: PipelineConfig
    run_dir: Path
    modality: Modality
    records: list[Record]
    prepared: Any
    train: list[int]
    holdout: list[int]
    state: RunState
    #: What the modality's fit learnt from the training items (`Modality.fit`).
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset_name(self) -> str:
        return self.config.data.dataset_name()

    @property
    def method_name(self) -> str:
        """How the pretrained initialisation is named in reports."""
        return self.config.pretrain.init_label()

    def row(self, stage: str, init: str, budget: str, metric: str, value: float) -> dict[str, Any]:
        return {
            "dataset": self.dataset_name,
            "stage": stage,
            "init": init,
            "label_budget": budget,
            "metric": metric,
            "value": None if value != value else float(value),  # NaN -> null in JSON
        }

    def build_encoder(self) -> Encoder:
        cfg = self.config.encoder
        name = cfg.name or self.modality.default_encoder
        if name not in ENCODERS:
            raise ConfigError(f"encoder.name: unknown encoder '{name}'; available: {ENCODERS.names()}")
        # Prepared data that knows its channel count (series: C variables) says it; scans
        # and slices are single-channel.
        in_channels = int(getattr(self.prepared, "channels", 1))
        try:
            return build_encoder(
                name, spatial_dims=cfg.spatial_dims, in_channels=in_channels, **cfg.kwargs
            )
        except ConfigError:
            raise  # the encoder's Config already names the key
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"encoder.kwargs: {exc}") from None

    def dataset(
        self, indices: list[int], purpose: Purpose, kept: Mapping[str, Any] | None = None
    ) -> Dataset:
        """The modality's dataset (slices of volumes for 2-D encoders), limited to the
        kept-index of a reduction when `kept` is given."""
        extra = {} if kept is None else {"kept": kept}
        return self.modality.dataset(self.prepared, indices, purpose, seed=self.config.seed, **extra)

    def loader(
        self,
        indices: list[int],
        purpose: Purpose,
        batch_size: int,
        *,
        samples: int | None = None,
        seed: int | None = None,
    ) -> DataLoader:
        """A loader over `indices` in order, or with `samples` that many items drawn with
        replacement (fine-tuning on a handful of labelled volumes) by `seed` (default: the
        run's)."""
        return item_loader(
            self.dataset(indices, purpose),
            batch_size,
            self.modality.collate,
            samples=samples,
            seed=self.config.seed if seed is None else seed,
            num_workers=self.config.data.num_workers,
        )

    def pretrain_loader(self, method: str, spec: BatchSpec, batch_size: int) -> Any:
        """Global batches of `batch_size` training items split over the processes, drawn by
        the modality in the grouping `spec` names (kept slices only when the run reduces)."""
        rank, world = launch_world()
        request = LoaderRequest(
            method=method,
            spec=spec,
            batch_size=batch_size,
            seed=self.config.seed,
            rank=rank,
            world=world,
            num_workers=self.config.data.num_workers,
            kept=self.kept_index(),
        )
        return self.modality.pretrain_loader(self.prepared, self.records, self.train, request)

    def kept_index(self) -> dict[str, list[int]] | None:
        """The kept-index the `reduce` stage wrote, when this run reduces its data."""
        if "reduce" not in self.config.stages:
            return None
        from medssl.platform.reduction.kept_index import load_kept_index

        return load_kept_index(self.run_dir / "reduce" / "kept.json")

    def pretrained_dir(self) -> Path:
        src = self.config.pretrain.from_checkpoint
        return Path(src) if src else self.run_dir / "pretrain"
