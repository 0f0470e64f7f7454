"""The classification task: the encoder's global vector into a linear head, cross-entropy,
and evaluation by AUROC, accuracy and balanced accuracy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from medssl.pipelines.tasks.pretrained import load_encoder_weights
from medssl.platform.encoders.base import Encoder
from medssl.platform.engine.progress import tracked
from medssl.platform.engine.supervised import SupervisedModule
from medssl.platform.evaluation.features import extract_features, module_device, pool_per_scan
from medssl.platform.evaluation.metrics import classification_scores
from medssl.platform.registry import TASKS

__all__ = [
    "ClassificationNet",
    "ClassificationTask",
    "LabelCrossEntropy",
    "evaluate_classification",
    "extract_features",
    "mean_log_loss",
    "predict_probabilities",
    "scan_probabilities",
]


class ClassificationNet(nn.Module):
    """logits = W · encoder.global_features(x) + b, one row of W per class."""

    def __init__(self, encoder: Encoder, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if encoder.feature_dim < 1:
            raise ValueError(f"encoder '{encoder.name}' reports feature_dim {encoder.feature_dim}")
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)
        self.init_report: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.global_features(x))


class LabelCrossEntropy(nn.Module):
    """Cross-entropy that accepts labels as (B,) or (B, 1), integer or integral float."""

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        target = label.reshape(-1)
        if target.shape[0] != logits.shape[0]:
            raise ValueError(
                f"labels {tuple(label.shape)} do not match logits {tuple(logits.shape)}"
            )
        return nn.functional.cross_entropy(logits, target.long())


def batch_accuracy(logits: torch.Tensor, label: torch.Tensor) -> float:
    return float((logits.argmax(dim=1).cpu() == label.reshape(-1).long().cpu()).float().mean())


def _batches(data: Iterable[Mapping[str, Any]]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for entry in data:
        x, label = torch.as_tensor(entry["x"]), torch.as_tensor(entry["label"])
        if label.ndim == 0:  # a single item rather than a collated batch
            x, label = x[None], label[None]
        yield x, label.reshape(-1)


def predict_probabilities(
    model: nn.Module, data: Iterable[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """(softmax probabilities (N, classes), labels (N,)) of every sample, in eval mode without
    gradients on the model's device. `data` yields batches or single items with `x`, `label`."""
    device = module_device(model)
    was_training = model.training
    model.eval()
    probs, labels = [], []
    try:
        with torch.no_grad():
            for x, label in _batches(data):
                logits = model(x.float().to(device))
                probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
                labels.append(label.cpu().numpy())
    finally:
        model.train(was_training)
    if not probs:
        raise ValueError("no samples to evaluate; the evaluation set is empty")
    return np.concatenate(probs), np.concatenate(labels).astype(np.int64)


def _owner(data: Any) -> np.ndarray | None:
    """The scan of every item when `data` is a loader over slices of volumes, else None."""
    volume_of_items = getattr(getattr(data, "dataset", None), "volume_of_items", None)
    return None if volume_of_items is None else np.asarray(volume_of_items())


def scan_probabilities(
    model: nn.Module, data: Any, progress: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`predict_probabilities`, pooled per scan when `data` serves slices of volumes (a 2-D
    encoder on volumes is scored per volume, not per slice). With `progress` (a label), the
    batches of a loader are reported as they go (`tracked`)."""
    batches = tracked(data, progress, unit="batch") if progress else data
    return pool_per_scan(*predict_probabilities(model, batches), _owner(data))


def evaluate_classification(
    model: nn.Module,
    data: Iterable[Mapping[str, Any]],
    num_classes: int | None = None,
    progress: str | None = None,
) -> dict[str, float]:
    """AUROC (one-vs-rest macro for more than two classes), accuracy and balanced accuracy of
    the model's softmax probabilities on `data` (see `scan_probabilities`: one prediction per
    scan, also when a loader serves slices of volumes), and n (scans)."""
    p, y = scan_probabilities(model, data, progress)
    if num_classes is not None and p.shape[1] != num_classes:
        raise ValueError(f"the model gives {p.shape[1]} class scores, expected {num_classes}")
    return {**classification_scores(y, p), "n": float(y.shape[0])}


def mean_log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (probabilities floored at 1e-7)."""
    picked = probs[np.arange(labels.shape[0]), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


@TASKS.register("classification")
class ClassificationTask:
    """One label per scan: `ClassificationNet` (encoder global vector -> linear head) trained
    with cross-entropy on `x` and `label`."""

    name: ClassVar[str] = "classification"
    purpose: ClassVar[str] = "classification"
    target_key: ClassVar[str] = "label"
    #: Checkpoints are picked by the validation log-loss: smoother than AUROC on a few cases.
    selection_metric: ClassVar[tuple[str, bool]] = ("log_loss", False)

    def build_model(
        self,
        encoder: Encoder,
        num_classes: int,
        pretrained_state: Mapping[str, torch.Tensor] | None = None,
        keys: Sequence[str] | None = None,
    ) -> ClassificationNet:
        """With `pretrained_state`, the encoder tensors named in `keys` (what pretraining
        changed), else those under `encoder.encoder_prefixes` (all of them when it declares
        none), are copied; the head stays fresh."""
        model = ClassificationNet(encoder, num_classes)
        if pretrained_state is not None:
            prefixes = keys if keys else (encoder.encoder_prefixes or None)
            model.init_report = load_encoder_weights(encoder, pretrained_state, prefixes)
        return model

    def loss(self) -> nn.Module:
        return LabelCrossEntropy()

    def module(self, model: nn.Module, **optim: Any) -> SupervisedModule:
        """A SupervisedModule wired with this task's loss, target and validation accuracy."""
        return SupervisedModule(
            model,
            self.loss(),
            target_key=self.target_key,
            val_metric=batch_accuracy,
            val_metric_name="accuracy",
            **optim,
        )

    def evaluate(
        self,
        model: nn.Module,
        data: Any,
        indices: Sequence[int] | None = None,
        *,
        num_classes: int | None = None,
        batch_size: int = 8,
        progress: str | None = None,
    ) -> dict[str, float]:
        """AUROC, accuracy, balanced accuracy and n. `data` is items or a loader; or a run
        context, with `indices` naming the scans, whose "classification" loader is used (its
        batches reported under the label `progress`, when given)."""
        if indices is not None:
            data = data.loader(list(indices), "classification", batch_size)
        return evaluate_classification(model, data, num_classes, progress if indices is not None else None)

    def validation_score(
        self, model: nn.Module, ctx: Any, indices: Sequence[int], *, batch_size: int = 8
    ) -> float:
        """Mean log-loss on the scans `indices` of the run context `ctx` (lower is better),
        one prediction per scan."""
        probs, labels = scan_probabilities(
            model, ctx.loader(list(indices), "classification", batch_size), progress="validate"
        )
        return mean_log_loss(probs, labels)
