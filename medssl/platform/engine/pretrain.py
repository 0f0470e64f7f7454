"""The Lightning module that trains any `Method`: optimiser, schedule, logging, EMA hooks."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from medssl.platform.batch import Batch
from medssl.platform.methods.base import Method


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to zero at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def optimizer_groups(method: Method) -> list[dict[str, Any]]:
    """AdamW parameter groups: the method's own `parameter_groups()` when it has one (e.g. an
    augmenter with its own lr and weight decay; the schedule scales every group), else one
    group of all trainable parameters. Every trainable parameter must be in exactly one group.
    """
    trainable = [p for p in method.parameters() if p.requires_grad]
    custom = getattr(method, "parameter_groups", None)
    if not callable(custom):
        return [{"params": trainable}]
    groups = [{**group, "params": list(group["params"])} for group in custom()]
    grouped = [id(p) for group in groups for p in group["params"]]
    if len(grouped) != len(set(grouped)) or set(grouped) != {id(p) for p in trainable}:
        raise ValueError(
            f"method '{method.name}': parameter_groups() must list every trainable parameter "
            f"exactly once ({len(grouped)} listed, {len(trainable)} trainable)"
        )
    return groups


class PretrainModule(L.LightningModule):
    """Wraps a Method; the method supplies the loss, this module supplies the rest."""

    def __init__(
        self,
        method: Method,
        *,
        lr: float,
        weight_decay: float,
        total_steps: int,
        warmup_fraction: float = 0.05,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.method = method
        self.lr = lr
        self.weight_decay = weight_decay
        self.total_steps = max(1, total_steps)
        self.warmup_steps = int(warmup_fraction * self.total_steps)
        self.seed = seed

    def on_train_start(self) -> None:
        self.method.before_first_step(self.global_step)

    def on_train_epoch_start(self) -> None:
        self.method.seed = self.seed
        self.method.epoch = self.current_epoch
        # Lightning re-seeds a loader's `sampler` each epoch but not a batch sampler itself
        # (e.g. the volume x partition sampler): without this every epoch repeats epoch 0.
        batch_sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        set_epoch = getattr(batch_sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.current_epoch)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if not isinstance(batch, Batch):
            batch = Batch(batch)
        out = self.method(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"pretraining loss became {loss.item()} at step {self.global_step}; "
                "lower the learning rate or check the input normalisation"
            )
        logged = {f"pretrain/{k}": v.detach().float() for k, v in out.items() if v.ndim == 0}
        self.log_dict(logged, prog_bar=False, batch_size=batch.batch_size, sync_dist=False)
        self.log("loss", loss.detach().float(), prog_bar=True, batch_size=batch.batch_size)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.method.after_optimizer_step(self.global_step, self.total_steps)

    def configure_optimizers(self) -> Any:
        groups = optimizer_groups(self.method)
        optimizer = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, self.total_steps, self.warmup_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Keyed augmentation makes views a function of (seed, epoch, index); the remaining
        # global RNG (dropout, masking) is saved so a resumed run continues the same stream.
        checkpoint["medssl_rng"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("medssl_rng")
        if state is not None:
            torch.set_rng_state(state["torch"])
