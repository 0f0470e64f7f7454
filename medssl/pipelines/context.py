"""What every stage of a run shares: the config, the run folder and its saved state, the
modality with its prepared data, the subject-level split, and builders for models and loaders."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

import medssl.modalities  # noqa: F401  (registers the adapters)
import medssl.pipelines.tasks  # noqa: F401  (registers the tasks)
from medssl.modalities.base import Modality, Purpose, Record
from medssl.platform.config import PipelineConfig, validate_section
from medssl.platform.encoders import Encoder, build_encoder
from medssl.platform.engine.trainer import launch_world
from medssl.platform.errors import CompatibilityError, ConfigError
from medssl.platform.registry import ENCODERS, METHODS, MODALITIES

log = logging.getLogger("medssl")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_modality(config: PipelineConfig) -> Modality:
    try:
        cls = MODALITIES.get(config.data.modality)
    except KeyError as exc:
        raise ConfigError(f"data.modality: {exc.args[0]}") from None
    prep = validate_section(cls.Preprocessing, config.data.preprocessing, "data.preprocessing")
    return cls(prep)


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


#: Batch fields the volume adapter serves only on slices (2-D encoders).
SLICE_FIELDS = frozenset({"partition", "position"})


def _check_slices(config: PipelineConfig) -> None:
    """Settings a 2-D encoder on volumes needs, and the stages that need one."""
    slices = config.data.modality == "volume" and config.encoder.spatial_dims == 2
    if {"reduce", "pretrain"} <= set(config.stages) and not slices:
        raise ConfigError(
            "stages: 'reduce' keeps slices, which only 2-D encoders pretrain on; set "
            "encoder.spatial_dims=2 or remove 'reduce' from stages"
        )
    if not slices:
        return
    prep = config.data.preprocessing
    if prep.get("slice_size") is None:
        raise ConfigError(
            "data.preprocessing.slice_size: a 2-D encoder on volumes trains on axial slices, "
            "which must share a size to be batched; set it, e.g. [128, 128]"
        )
    orientation = str(prep.get("orientation", "RAS")).upper()
    if orientation[-1:] not in ("S", "I"):
        raise ConfigError(
            f"data.preprocessing.orientation: '{orientation}' does not put the "
            "inferior-superior axis last, so the last axis would not give axial slices; use "
            "RAS or LPS"
        )


def check_compatibility(config: PipelineConfig) -> None:
    """Before any data is read: method x modality for every pretraining phase (and each
    phase's settings), slice settings, and the phase inits fine-tuning asks for."""
    _check_slices(config)
    phases = config.pretrain.phases()
    if "finetune" in config.stages:
        for init in config.finetune.inits:
            if init.startswith("phase") and int(init[5:]) > len(phases):
                raise ConfigError(
                    f"finetune.inits: '{init}' asks for phase {init[5:]} but pretraining has "
                    f"{len(phases)} phase(s); use phase1..phase{len(phases)} or pretrained"
                )
    if "pretrain" not in config.stages:
        return
    modality_cls = MODALITIES.get(config.data.modality)
    provides = set(modality_cls.provides)
    if config.data.modality == "volume" and config.encoder.spatial_dims != 2:
        provides -= SLICE_FIELDS
    for phase, settings in enumerate(phases):
        cls = method_class(config, phase)
        options = {k: v for k, v in settings.method.items() if k != "name"}  # type: ignore[attr-defined]
        validate_section(cls.Config, options, phase_key(phase))
        missing = sorted(set(cls.requires) - provides)
        if missing and set(missing) <= SLICE_FIELDS and config.data.modality == "volume":
            raise CompatibilityError(
                f"{phase_key(phase)}.name: method '{cls.name}' needs {missing}, which volumes "
                "provide only as slices; set encoder.spatial_dims=2 (and "
                "data.preprocessing.slice_size)"
            )
        if missing:
            providers = [
                n for n in MODALITIES.names()
                if set(cls.requires) <= set(MODALITIES.get(n).provides)
            ]
            raise CompatibilityError(
                f"{phase_key(phase)}.name: method '{cls.name}' needs batch field(s) {missing} "
                f"that modality '{config.data.modality}' does not provide; modalities that do: "
                f"{', '.join(providers) or 'none yet'}"
            )


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

    @property
    def dataset_name(self) -> str:
        return self.config.data.dataset_name()

    @property
    def method_name(self) -> str:
        """How the pretrained initialisation is named in reports."""
        return self.config.pretrain.init_label()

    @property
    def slices(self) -> bool:
        """A 2-D encoder on volumes: every stage but evaluation works on axial slices."""
        return self.config.data.modality == "volume" and self.config.encoder.spatial_dims == 2

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
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"encoder.kwargs: {exc}") from None

    def dataset(
        self, indices: list[int], purpose: Purpose, kept: Mapping[str, Any] | None = None
    ) -> Dataset:
        """The modality's dataset; slices of volumes for 2-D encoders, limited to the
        kept-index of a reduction when `kept` is given."""
        if self.slices:
            return self.modality.dataset(  # type: ignore[call-arg]
                self.prepared, indices, purpose, seed=self.config.seed, slices=True, kept=kept
            )
        if kept is not None:
            raise ConfigError(
                "stages: 'reduce' keeps slices, which only 2-D encoders train on; set "
                "encoder.spatial_dims=2 or remove 'reduce' from stages"
            )
        return self.modality.dataset(self.prepared, indices, purpose, seed=self.config.seed)

    def loader(
        self,
        indices: list[int],
        purpose: Purpose,
        batch_size: int,
        *,
        distributed_shuffle: bool = False,
        samples: int | None = None,
        seed: int | None = None,
        kept: Mapping[str, Any] | None = None,
    ) -> DataLoader:
        """A loader over `indices`. `distributed_shuffle`: each rank takes its share of one
        seeded permutation (the same global batches for any world size); `samples`: draw that
        many items with replacement (fine-tuning on a handful of labelled volumes); `seed`:
        the draw's seed (default: the run's)."""
        ds = self.dataset(indices, purpose, kept)
        generator = torch.Generator().manual_seed(self.config.seed if seed is None else seed)
        sampler: Any = None
        if distributed_shuffle:
            rank, world = launch_world()
            if batch_size % world:
                raise ConfigError(
                    f"pretrain.batch_size {batch_size} is the global batch and must be divisible "
                    f"by the number of processes ({world})"
                )
            batch_size //= world
            sampler = DistributedSampler(
                ds, num_replicas=world, rank=rank, shuffle=True, seed=self.config.seed,
                drop_last=True,
            )
            if len(sampler) < batch_size:
                raise ConfigError(
                    f"pretrain.batch_size: {batch_size * world} is larger than the "
                    f"{len(ds)} pretraining items; lower it"
                )
        elif samples is not None:
            sampler = RandomSampler(ds, replacement=True, num_samples=samples, generator=generator)
        workers = self.config.data.num_workers
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            drop_last=distributed_shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=self.modality.collate,
        )

    def kept_index(self) -> dict[str, list[int]] | None:
        """The kept-index the `reduce` stage wrote, when this run reduces its data."""
        if "reduce" not in self.config.stages:
            return None
        from medssl.platform.reduction.kept_index import load_kept_index

        return load_kept_index(self.run_dir / "reduce" / "kept.json")

    def pretrained_dir(self) -> Path:
        src = self.config.pretrain.from_checkpoint
        return Path(src) if src else self.run_dir / "pretrain"
