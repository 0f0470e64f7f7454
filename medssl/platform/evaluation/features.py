"""Frozen-feature extraction for the probes: run an encoder over a data loader without
gradients and gather its global vectors with the labels and subjects that came with them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sized

import numpy as np
import torch
from torch import nn

from medssl.platform.engine.progress import tracked


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); CPU for an empty module."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def _global_features(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(encoder, "global_features"):
        return encoder.global_features(x)
    return encoder(x)


def extract_features(
    encoder: nn.Module,
    dataloader: Iterable[Mapping[str, torch.Tensor]],
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Global features of every sample: (features (N, D) float32, labels (N,) or None,
    subjects (N,) or None).

    The encoder runs in eval mode under `torch.no_grad` on its own device, and its previous
    train/eval mode is restored afterwards. Labels and subjects are returned when every batch
    carries the `label` / `subject` field, else None. With `progress` (a label) and a loader
    that has a length, the batches done are reported as they go (`tracked`).
    """
    if progress and isinstance(dataloader, Sized):
        dataloader = tracked(dataloader, progress, unit="batch")
    device = module_device(encoder)
    was_training = encoder.training
    encoder.eval()
    features: list[np.ndarray] = []
    labels: list[np.ndarray] | None = []
    subjects: list[np.ndarray] | None = []
    try:
        with torch.no_grad():
            for batch in dataloader:
                x = torch.as_tensor(batch["x"]).to(device, non_blocking=True)
                out = _global_features(encoder, x).float()
                if out.ndim != 2 or out.shape[0] != x.shape[0]:
                    raise ValueError(
                        f"global features must be (batch, dim), got {tuple(out.shape)} "
                        f"for input {tuple(x.shape)}"
                    )
                features.append(out.cpu().numpy())
                labels = _gather(labels, batch, "label")
                subjects = _gather(subjects, batch, "subject")
    finally:
        encoder.train(was_training)
    if not features:
        raise ValueError("the data loader yielded no batches; there is nothing to embed")
    return (
        np.concatenate(features).astype(np.float32, copy=False),
        np.concatenate(labels) if labels is not None else None,
        np.concatenate(subjects) if subjects is not None else None,
    )


def _gather(
    collected: list[np.ndarray] | None, batch: Mapping[str, torch.Tensor], key: str
) -> list[np.ndarray] | None:
    if collected is None or key not in batch:
        return None
    collected.append(torch.as_tensor(batch[key]).detach().cpu().numpy())
    return collected


def pool_per_scan(
    values: np.ndarray, labels: np.ndarray, owner: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item rows (features or class probabilities of slices) pooled into one row per scan:
    `owner[k]` is the scan of item k (None: the items are scans already, returned as they are).
    A scan's row is the mean over its items, its label that of its first item (every slice
    carries its scan's label). Scans come in the order of their first item.

    Example:
        >>> rows, labels = pool_per_scan(np.array([[0.0], [2.0], [5.0]]), np.array([1, 1, 0]),
        ...                              np.array([0, 0, 1]))
        >>> rows.ravel().tolist(), labels.tolist()
        ([1.0, 5.0], [1, 0])
    """
    if owner is None:
        return values, labels
    if owner.shape[0] != values.shape[0] or labels.shape[0] != values.shape[0]:
        raise ValueError(
            f"{owner.shape[0]} owners and {labels.shape[0]} labels for {values.shape[0]} rows"
        )
    _, first = np.unique(owner, return_index=True)
    first = np.sort(first)
    pooled = np.stack([values[owner == owner[k]].mean(axis=0) for k in first])
    return pooled, labels[first]


def extract_joint_embeddings(
    model: nn.Module, dataloader: Iterable[Mapping[str, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None]:
    """Joint-space embeddings of every image and its report from an image-text method (one
    with `embed_images(x)` and `embed_texts(text, text_mask)`): (images (N, D), reports
    (N, D), labels (N,) or None), on the CPU, with the model in eval mode under no_grad (its
    mode is restored afterwards)."""
    device = module_device(model)
    was_training = model.training
    model.eval()
    images: list[torch.Tensor] = []
    texts: list[torch.Tensor] = []
    labels: list[np.ndarray] | None = []
    try:
        with torch.no_grad():
            for batch in dataloader:
                x = torch.as_tensor(batch["x"]).to(device)
                ids = torch.as_tensor(batch["text"]).to(device)
                mask = torch.as_tensor(batch["text_mask"]).to(device).bool()
                images.append(model.embed_images(x).float().cpu())  # type: ignore[operator]
                texts.append(model.embed_texts(ids, mask).float().cpu())  # type: ignore[operator]
                labels = _gather(labels, batch, "label")
    finally:
        model.train(was_training)
    if not images:
        raise ValueError("the data loader yielded no batches; there is nothing to embed")
    return torch.cat(images), torch.cat(texts), np.concatenate(labels) if labels else None
