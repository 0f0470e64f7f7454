"""The classification task learns separable synthetic volumes and evaluates them."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import medssl.pipelines.tasks  # noqa: F401  (registers the tasks)
from medssl.pipelines.tasks.classification import (
    ClassificationTask,
    LabelCrossEntropy,
    evaluate_classification,
    extract_features,
)
from medssl.platform.batch import collate_items
from medssl.platform.evaluation.probes import linear_probe
from medssl.platform.registry import TASKS

sys.path.insert(0, str(Path(__file__).parent))
from tiny_encoders import PoolingEncoder  # noqa: E402


def scans(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Class 1 holds a bright 3^3 block somewhere in the 8^3 volume; class 0 does not."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        label = i % 2
        x = 0.3 * torch.randn(1, 8, 8, 8, generator=gen)
        if label:
            a, b, c = (int(v) for v in torch.randint(0, 6, (3,), generator=gen))
            x[:, a : a + 3, b : b + 3, c : c + 3] += 2.0
        out.append({"x": x, "label": torch.tensor(label), "subject": torch.tensor(i)})
    return out


def test_registered():
    assert TASKS.get("classification") is ClassificationTask
    assert ClassificationTask.target_key == "label"


def test_learns_separable_scans():
    torch.manual_seed(0)
    task = ClassificationTask()
    model = task.build_model(PoolingEncoder(), num_classes=2)
    train = DataLoader(
        scans(48, seed=1),
        batch_size=8,
        shuffle=True,
        collate_fn=collate_items,
        generator=torch.Generator().manual_seed(0),
    )
    module = task.module(model, lr=2e-2, optimizer="adam", total_steps=60)
    L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=60,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(module, train)
    held_out = scans(40, seed=2)
    loader = DataLoader(held_out, batch_size=16, collate_fn=collate_items)
    result = task.evaluate(model, loader)
    assert result["accuracy"] >= 0.95 and result["auroc"] >= 0.99, result
    assert result["n"] == 40
    assert evaluate_classification(model, held_out) == pytest.approx(result)  # single items
    assert model.training  # mode restored

    feats, labels, subjects = extract_features(model.encoder, loader)
    assert feats.shape == (40, model.encoder.feature_dim)
    assert subjects.tolist() == list(range(40))
    train_feats, train_labels, _ = extract_features(
        model.encoder, DataLoader(scans(48, seed=1), batch_size=16, collate_fn=collate_items)
    )
    assert linear_probe(train_feats, train_labels, feats, labels)["accuracy"] >= 0.95


def test_evaluate_through_a_run_context():
    task = ClassificationTask()
    model = task.build_model(PoolingEncoder(), 2)
    data = scans(6, seed=3)
    asked = []

    def loader(indices, purpose, batch_size):
        asked.append((indices, purpose))
        return DataLoader(
            [data[i] for i in indices], batch_size=batch_size, collate_fn=collate_items
        )

    out = task.evaluate(model, SimpleNamespace(loader=loader), [0, 1, 4, 5])
    assert asked == [([0, 1, 4, 5], "classification")]
    assert out["n"] == 4 and set(out) == {"auroc", "accuracy", "balanced_accuracy", "n"}


class _SlicesOf(torch.utils.data.Dataset):
    """Items standing for slices: `owner[k]` is the volume of item k, as `SliceDataset`."""

    def __init__(self, items: list[dict[str, torch.Tensor]], owner: list[int]) -> None:
        self.items, self.owner = items, owner

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.items[k]

    def volume_of_items(self) -> np.ndarray:
        return np.asarray(self.owner)


class _Scripted(torch.nn.Module):
    """Logits read from the input's first value: x[0, 0, 0, 0] = logit of class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x[:, 0, 0, 0, 0]
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_slices_of_volumes_are_scored_per_volume():
    """A 2-D model on volumes is scored on one prediction per volume (its slices' mean
    probability), not per slice: volume 0 (label 0) has one confidently wrong slice among
    three right ones, which flips a per-slice count but not the volume's mean."""
    logits = [[-4.0, -4.0, -4.0, 1.0], [3.0, 3.0], [-3.0]]  # per volume, per slice
    labels = [0, 1, 0]
    items, owner = [], []
    for v, (volume, label) in enumerate(zip(logits, labels, strict=True)):
        for value in volume:
            items.append({"x": torch.full((1, 2, 2, 1), value), "label": torch.tensor(label)})
            owner.append(v)
    loader = DataLoader(_SlicesOf(items, owner), batch_size=3, collate_fn=collate_items)
    task = ClassificationTask()
    out = task.evaluate(_Scripted(), loader)
    assert out["n"] == 3 and out["accuracy"] == 1.0 and out["auroc"] == 1.0
    per_slice = evaluate_classification(_Scripted(), items)  # the same items, not grouped
    assert per_slice["n"] == 7 and per_slice["accuracy"] == pytest.approx(6 / 7)

    context = SimpleNamespace(loader=lambda indices, purpose, batch_size: loader)
    p1 = 1 / (1 + np.exp(-np.array([-4.0, -4.0, -4.0, 1.0])))
    expected = -np.mean(np.log([1 - p1.mean(), 1 / (1 + np.exp(-3.0)), 1 - 1 / (1 + np.exp(3.0))]))
    assert task.validation_score(_Scripted(), context, [0, 1, 2]) == pytest.approx(expected)


def test_loss_accepts_label_shapes():
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    loss = LabelCrossEntropy()
    want = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    assert torch.allclose(loss(logits, torch.tensor([0, 1])), want)
    assert torch.allclose(loss(logits, torch.tensor([[0.0], [1.0]])), want)
    with pytest.raises(ValueError, match="do not match"):
        loss(logits, torch.tensor([0, 1, 1]))


def test_bad_construction():
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationTask().build_model(PoolingEncoder(), 1)
    model = ClassificationTask().build_model(PoolingEncoder(), 3)
    with pytest.raises(ValueError, match="expected 2"):
        evaluate_classification(model, scans(4, seed=0), num_classes=2)
    assert np.isfinite(evaluate_classification(model, scans(4, seed=0))["accuracy"])
