"""The trainer factory: one place that turns the `trainer` config section into a Lightning
Trainer with precision, DDP under torchrun, logs, checkpoints that resume, and progress."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from medssl.platform.config import TrainerConfig

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


class EpochSummary(Callback):
    """Prints one line per epoch when no interactive progress bar is shown (CI, logs)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        loss = trainer.callback_metrics.get("loss")
        shown = f"{float(loss):.4f}" if loss is not None else "n/a"
        print(
            f"[{self.label}] epoch {trainer.current_epoch + 1}/{trainer.max_epochs} "
            f"step {trainer.global_step} loss {shown} "
            f"({time.perf_counter() - self._start:.1f}s)",
            flush=True,
        )


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
        callbacks.append(EpochSummary(label))
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
