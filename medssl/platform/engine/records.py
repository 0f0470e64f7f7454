"""The per-step records a method keeps beyond its logged scalars (`Method.training_record`):
collected through a fit, carried in its resume checkpoints, written as one JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from medssl.platform.io import atomic_write_json

#: The file of a pretraining folder that holds its method's records.
RECORDS_FILE = "training_records.json"


class TrainingRecords(Callback):
    """Asks the method of a `PretrainModule` for its `training_record()` after every training
    batch and keeps the records in order. They are part of the callback's state, so a run
    resumed from a checkpoint has the records up to that checkpoint; on rank 0 they are written
    to `path` (``{"records": [...]}``, atomically) whenever a checkpoint is saved and at the end
    of the fit. Nothing is written for a method that keeps no records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        record = pl_module.method.training_record()
        if record is not None:
            self.records.append(record)

    def state_dict(self) -> dict[str, Any]:
        return {"records": list(self.records)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))

    def _write(self, trainer: L.Trainer) -> None:
        if self.records and trainer.is_global_zero:
            atomic_write_json(self.path, {"records": self.records})

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._write(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records `TrainingRecords` wrote to `path` ([] when there is no such file)."""
    path = Path(path)
    if not path.is_file():
        return []
    return list(json.loads(path.read_text())["records"])
