"""The trainer factory: one place that turns the `trainer` config section into a Lightning
Trainer with precision, DDP under torchrun, logs, checkpoints that resume, and progress."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from medssl.platform.config import TrainerConfig
from medssl.platform.engine.progress import ProgressLine

log = logging.getLogger("medssl")

LAST_CHECKPOINT = "last.ckpt"


def launch_world() -> tuple[int, int]:
    """(rank, world size) of this process as set by torchrun, before any process group."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def resolve_accelerator(cfg: TrainerConfig) -> str:
    if cfg.accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return cfg.accelerator


def resolve_precision(cfg: TrainerConfig) -> str:
    """bf16 mixed precision on a GPU that supports it, full fp32 elsewhere."""
    if cfg.precision != "auto":
        return cfg.precision
    if resolve_accelerator(cfg) == "gpu" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


class TrainingProgress(Callback):
    """Progress lines of a Lightning fit when no interactive bar is shown (CI, logs): the
    optimiser step out of the fit's total with the loss, through `ProgressLine`, and for a
    fit of several epochs a line at the end of every epoch, `epoch k/N step ...`."""

    def __init__(self, label: str, every: float | None = None) -> None:
        self.label = label
        self.every = every
        self.progress: ProgressLine | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        self.progress = ProgressLine(
            self.label, max(1, int(total)), unit="step", every=self.every,
            start=int(trainer.global_step),
        )

    def _report(self, trainer: L.Trainer, force: bool = False, prefix: str = "") -> None:
        if self.progress is None or trainer.global_rank != 0:
            return
        loss = trainer.callback_metrics.get("loss")
        detail = f"loss {float(loss):.4f}" if loss is not None else "loss n/a"
        self.progress.update(int(trainer.global_step), detail, force=force, prefix=prefix)

    def _epochs(self, trainer: L.Trainer) -> bool:
        return trainer.max_epochs is not None and trainer.max_epochs > 1

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        # In a fit of several epochs, an epoch's last batch (and the fit's) is reported by the
        # epoch's own line.
        last = batch_idx + 1 >= trainer.num_training_batches or (
            self.progress is not None and trainer.global_step >= self.progress.total
        )
        if not (self._epochs(trainer) and last):
            self._report(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epochs(trainer):
            epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} "
            self._report(trainer, force=True, prefix=epoch)


def build_trainer(
    cfg: TrainerConfig,
    *,
    root_dir: str | Path,
    label: str,
    max_epochs: int,
    max_steps: int | None = None,
    checkpoint_every_n_steps: int | None = None,
    extra_callbacks: list[Callback] | None = None,
) -> L.Trainer:
    """A Trainer writing logs under `root_dir/logs` and resume checkpoints under
    `root_dir/checkpoints` (safetensors + JSON, never pickles)."""
    from medssl.platform.resume_io import SafeCheckpointIO

    root = Path(root_dir)
    accelerator = resolve_accelerator(cfg)
    _, world = launch_world()
    devices: Any = cfg.devices
    num_nodes = 1
    strategy: Any = cfg.strategy
    if world > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        devices, num_nodes = local, world // local
        if strategy == "auto":
            # Global methods leave the decoder unused and classification leaves it too.
            strategy = "ddp_find_unused_parameters_true"
    elif devices == "auto":
        devices = 1
    callbacks: list[Callback] = list(extra_callbacks or [])
    if checkpoint_every_n_steps:
        callbacks.append(
            ModelCheckpoint(
                dirpath=root / "checkpoints",
                filename="step{step}",
                save_last=True,
                save_top_k=0,
                every_n_train_steps=checkpoint_every_n_steps,
                save_on_train_epoch_end=True,
            )
        )
    interactive = cfg.progress_bar and sys.stderr.isatty()
    if interactive:
        callbacks.append(RichProgressBar())
    else:
        callbacks.append(TrainingProgress(label))
    # A resumed run logs into a new version folder so the first attempt's curve survives.
    version = f"attempt{len(list((root / 'logs').glob('attempt*')))}"
    attempt = root / "logs" / version
    loggers = [
        TensorBoardLogger(attempt, name="tensorboard", version=""),
        CSVLogger(attempt, name="csv", version=""),
    ]
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=resolve_precision(cfg),  # type: ignore[arg-type]
        max_epochs=max_epochs,
        max_steps=max_steps if max_steps is not None else -1,
        logger=loggers,
        callbacks=callbacks,
        plugins=[SafeCheckpointIO()],
        enable_checkpointing=bool(checkpoint_every_n_steps),
        enable_progress_bar=interactive,
        enable_model_summary=False,
        log_every_n_steps=cfg.log_every_n_steps,
        use_distributed_sampler=False,
        # SyncBatchNorm needs CUDA tensors; CPU DDP runs keep per-rank statistics.
        sync_batchnorm=world > 1 and accelerator == "gpu",
        default_root_dir=root,
        num_sanity_val_steps=0,
    )


def last_checkpoint(root_dir: str | Path) -> Path | None:
    path = Path(root_dir) / "checkpoints" / LAST_CHECKPOINT
    return path if path.is_file() else None
