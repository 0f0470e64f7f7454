"""SupervisedModule: it learns, logs, follows a cosine schedule and checks its arguments."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medssl.platform.engine.supervised import SupervisedModule


def loader(n: int = 64, batch_size: int = 16, seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    ds = TensorDataset(x, y)
    return DataLoader(
        ds,
        batch_size=batch_size,
        collate_fn=lambda items: {
            "x": torch.stack([i[0] for i in items]),
            "label": torch.stack([i[1] for i in items]),
        },
    )


def trainer(max_steps: int, callbacks: list[Callback] | None = None) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks or [],
    )


class LearningRates(Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.values.append(trainer.optimizers[0].param_groups[0]["lr"])


def accuracy(logits: torch.Tensor, label: torch.Tensor) -> float:
    return float((logits.argmax(1) == label).float().mean())


def test_learns_logs_and_validates():
    torch.manual_seed(0)
    module = SupervisedModule(
        nn.Linear(4, 2),
        nn.functional.cross_entropy,
        lr=0.1,
        total_steps=40,
        val_metric=accuracy,
        val_metric_name="accuracy",
    )
    data = loader()
    with torch.no_grad():
        before = nn.functional.cross_entropy(
            module(next(iter(data))["x"]), next(iter(data))["label"]
        )
    t = trainer(40)
    t.fit(module, data, val_dataloaders=loader(seed=1))
    assert {"train/loss", "loss", "val/loss", "val/accuracy"} <= set(t.callback_metrics)
    assert float(t.callback_metrics["train/loss"]) < 0.5 * float(before)
    assert float(t.callback_metrics["val/accuracy"]) > 0.9


@pytest.mark.parametrize("warmup_fraction", [0.0, 0.25])
def test_cosine_schedule(warmup_fraction):
    lrs = LearningRates()
    module = SupervisedModule(
        nn.Linear(4, 2),
        nn.functional.cross_entropy,
        lr=0.01,
        total_steps=20,
        warmup_fraction=warmup_fraction,
    )
    trainer(20, [lrs]).fit(module, loader())
    warmup = int(warmup_fraction * 20)
    want = []
    for step in range(20):
        if step < warmup:
            want.append(0.01 * (step + 1) / warmup)
        else:
            want.append(0.01 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (20 - warmup))))
    assert lrs.values == pytest.approx(want, rel=1e-6, abs=1e-12)


def test_schedule_length_defaults_to_trainer_estimate():
    lrs = LearningRates()
    module = SupervisedModule(nn.Linear(4, 2), nn.functional.cross_entropy, lr=0.01)
    trainer(8, [lrs]).fit(module, loader())
    assert lrs.values[-1] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_optimiser_choice(name, cls):
    module = SupervisedModule(
        nn.Linear(4, 2),
        nn.functional.cross_entropy,
        optimizer=name,
        weight_decay=0.1,
        total_steps=5,
    )
    config = module.configure_optimizers()
    assert type(config["optimizer"]) is cls
    assert config["optimizer"].param_groups[0]["weight_decay"] == 0.1


def test_custom_target_key_and_missing_field():
    module = SupervisedModule(
        nn.Conv2d(1, 2, 1), nn.functional.cross_entropy, target_key="mask", total_steps=2
    )
    x = torch.randn(2, 1, 4, 4)
    _, _, loss = module._predict_and_loss({"x": x, "mask": torch.zeros(2, 4, 4, dtype=torch.long)})
    assert loss.ndim == 0
    with pytest.raises(KeyError, match="'mask'"):
        module._predict_and_loss({"x": x, "label": torch.zeros(2)})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"optimizer": "sgd"}, "sgd"),
        ({"total_steps": 0}, "total_steps"),
        ({"warmup_fraction": 1.0}, "warmup_fraction"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SupervisedModule(nn.Linear(2, 2), nn.functional.cross_entropy, **kwargs)
