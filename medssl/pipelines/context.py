"""What every stage of a run shares: the config, the run folder and its saved state, the
modality with its prepared data, the subject-level split, and builders for models and loaders."""

from __future__ import annotations

import json
import logging
import os
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


def method_class(config: PipelineConfig) -> Any:
    name = config.pretrain.method["name"]
    try:
        return METHODS.get(name)
    except KeyError as exc:
        raise ConfigError(f"pretrain.method.name: {exc.args[0]}") from None


def check_compatibility(config: PipelineConfig) -> None:
    """Method x modality check, before any data is read."""
    if "pretrain" not in config.stages:
        return
    cls = method_class(config)
    modality_cls = MODALITIES.get(config.data.modality)
    missing = sorted(set(cls.requires) - set(modality_cls.provides))
    if missing:
        providers = [
            n for n in MODALITIES.names() if set(cls.requires) <= set(MODALITIES.get(n).provides)
        ]
        raise CompatibilityError(
            f"pretrain.method.name: method '{cls.name}' needs batch field(s) {missing} that "
            f"modality '{config.data.modality}' does not provide; modalities that do: "
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
        return str(self.config.pretrain.method["name"])

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
        try:
            return build_encoder(name, spatial_dims=cfg.spatial_dims, in_channels=1, **cfg.kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"encoder.kwargs: {exc}") from None

    def dataset(self, indices: list[int], purpose: Purpose) -> Dataset:
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
    ) -> DataLoader:
        """A loader over `indices`. `distributed_shuffle`: each rank takes its share of one
        seeded permutation (the same global batches for any world size); `samples`: draw that
        many items with replacement (fine-tuning on a handful of labelled volumes); `seed`:
        the draw's seed (default: the run's)."""
        ds = self.dataset(indices, purpose)
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

    def pretrained_dir(self) -> Path:
        src = self.config.pretrain.from_checkpoint
        return Path(src) if src else self.run_dir / "pretrain"
