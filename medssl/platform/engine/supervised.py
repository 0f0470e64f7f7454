"""The Lightning module for supervised fine-tuning: any model, any loss, Adam or AdamW with a
cosine schedule. Segmentation and classification heads both train through it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from medssl.platform.engine.pretrain import warmup_cosine

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | float"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


class SupervisedModule(L.LightningModule):
    """Trains `model` so that `loss_fn(model(batch[input_key]), batch[target_key])` falls.

    Args:
        model: maps the input `x` (B, C, *spatial or time) to predictions (logits).
        loss_fn: (predictions, target) -> scalar loss.
        input_key: the Batch field fed to the model.
        target_key: the Batch field holding the target: "label" for classification,
            "mask" for segmentation.
        lr: peak learning rate.
        weight_decay: decoupled (AdamW) or L2 (Adam) weight decay.
        optimizer: "adamw" or "adam".
        total_steps: optimiser steps of the cosine schedule; default: the trainer's estimate.
        warmup_fraction: share of `total_steps` spent on a linear warm-up.
        val_metric: optional (predictions, target) -> number computed on each validation batch
            and logged, averaged over the epoch, as `val/<val_metric_name>`.

    Logs `train/loss` and `loss` every step and `val/loss` on validation batches.

    Example:
        >>> module = SupervisedModule(nn.Linear(4, 2), nn.functional.cross_entropy, lr=1e-2)
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        *,
        input_key: str = "x",
        target_key: str = "label",
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        optimizer: str = "adamw",
        total_steps: int | None = None,
        warmup_fraction: float = 0.0,
        val_metric: MetricFn | None = None,
        val_metric_name: str = "metric",
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got '{optimizer}'")
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        self.model = model
        self.loss_fn = loss_fn
        self.input_key = input_key
        self.target_key = target_key
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer_name = optimizer
        self.total_steps = total_steps
        self.warmup_fraction = warmup_fraction
        self.val_metric = val_metric
        self.val_metric_name = val_metric_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _predict_and_loss(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        for key in (self.input_key, self.target_key):
            if key not in batch:
                raise KeyError(
                    f"the batch has no '{key}' field (fields: {sorted(batch)}); "
                    "the dataset must provide the task's inputs and targets"
                )
        target = batch[self.target_key]
        predictions = self.model(batch[self.input_key])
        return predictions, target, self.loss_fn(predictions, target)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, _, loss = self._predict_and_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"fine-tuning loss became {loss.item()} at step {self.global_step}; "
                "lower the learning rate or check the input normalisation"
            )
        size = int(batch[self.input_key].shape[0])
        self.log("train/loss", loss.detach().float(), batch_size=size)
        self.log("loss", loss.detach().float(), prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        predictions, target, loss = self._predict_and_loss(batch)
        size = int(batch[self.input_key].shape[0])
        self.log("val/loss", loss.detach().float(), batch_size=size, on_epoch=True)
        if self.val_metric is not None:
            value = torch.as_tensor(
                self.val_metric(predictions.detach(), target), dtype=torch.float32
            )
            self.log(f"val/{self.val_metric_name}", value, batch_size=size, on_epoch=True)

    def _schedule_length(self) -> int:
        if self.total_steps is not None:
            return self.total_steps
        estimate = float(self.trainer.estimated_stepping_batches)
        if not math.isfinite(estimate) or estimate < 1:
            raise ValueError(
                "cannot size the cosine schedule from an unbounded trainer; pass total_steps "
                "or set max_steps / max_epochs"
            )
        return int(estimate)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = OPTIMIZERS[self.optimizer_name](
            params, lr=self.lr, weight_decay=self.weight_decay
        )
        total = self._schedule_length()
        warmup = int(self.warmup_fraction * total)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, total, warmup)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
