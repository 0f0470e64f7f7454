"""Scores for downstream tasks: per-label Dice and HD95 for label maps, AUROC, accuracy and
balanced accuracy for class predictions. Pure functions on arrays; no training state.

Absent labels follow one rule everywhere (see `dice_per_label` and `hd95_per_label`):

* absent from both prediction and truth: Dice NaN and HD95 NaN. The volume says nothing about
  that label, so it is left out of every mean (means here are NaN-ignoring).
* absent from exactly one of them: Dice 0, and HD95 the physical length of the image diagonal,
  the largest distance two voxels of the image can have. A missed or hallucinated structure is
  thereby penalised as the worst possible boundary error instead of silently dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

ArrayLike = np.ndarray | torch.Tensor | Sequence[float] | Sequence[int]


def _label_map(values: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    if tensor.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be a 2D or 3D label map (no batch or channel axis), "
            f"got shape {tuple(tensor.shape)}"
        )
    if tensor.is_floating_point() and not torch.equal(tensor, tensor.round()):
        raise ValueError(f"{name} must hold integer labels, got non-integer values")
    return tensor.long().cpu()


def _pair(
    pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background included), got {num_classes}")
    p, t = _label_map(pred, "pred"), _label_map(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"pred {tuple(p.shape)} and truth {tuple(t.shape)} differ in shape")
    for name, m in (("pred", p), ("truth", t)):
        if m.numel() and (int(m.min()) < 0 or int(m.max()) >= num_classes):
            raise ValueError(
                f"{name} holds labels in [{int(m.min())}, {int(m.max())}], "
                f"outside [0, {num_classes - 1}] for num_classes={num_classes}"
            )
    return p, t


def _spacing(spacing: float | Sequence[float] | np.ndarray | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim, dtype=np.float64)
    s = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.size != ndim or np.any(s <= 0):
        raise ValueError(f"spacing must be {ndim} positive values (mm per axis), got {spacing}")
    return s


def image_diagonal(shape: Sequence[int], spacing: float | Sequence[float] | None = None) -> float:
    """Physical distance between the centres of two opposite corner voxels of the image."""
    s = _spacing(spacing, len(shape))
    return float(math.sqrt(sum(((n - 1) * d) ** 2 for n, d in zip(shape, s, strict=True))))


def _labels(num_classes: int, include_background: bool) -> list[int]:
    return list(range(0 if include_background else 1, num_classes))


def dice_per_label(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    num_classes: int,
    *,
    include_background: bool = False,
) -> np.ndarray:
    """Dice 2|P n T| / (|P| + |T|) of each label of two label maps (2D or 3D, same shape).

    Returns one float64 per label (1..num_classes-1, or 0.. with `include_background`);
    NaN where the label is in neither map, 0 where it is in only one.

    Example:
        >>> dice_per_label(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]), 2)
        array([0.8])
    """
    p, t = _pair(pred, truth, num_classes)
    flat_p, flat_t = p.reshape(-1), t.reshape(-1)
    # Label counts instead of MONAI's one-hot compute_dice: one-hot maps of a whole CT with
    # ~100 organ labels would need tens of GB; the counts give the same ratio exactly.
    size_p = torch.bincount(flat_p, minlength=num_classes).double()
    size_t = torch.bincount(flat_t, minlength=num_classes).double()
    overlap = torch.bincount(flat_t[flat_p == flat_t], minlength=num_classes).double()
    total = size_p + size_t
    out = torch.where(total > 0, 2.0 * overlap / total.clamp_min(1.0), torch.nan).numpy()
    return out[_labels(num_classes, include_background)]


def hd95_per_label(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    num_classes: int,
    *,
    spacing: float | Sequence[float] | np.ndarray | None = None,
    include_background: bool = False,
) -> np.ndarray:
    """95th-percentile symmetric Hausdorff distance between label boundaries, in the units of
    `spacing` (mm per array axis; voxels when None).

    Boundary voxels are those of a label with a face-neighbour outside it (or on the image
    border). For each direction the 95th percentile (linear interpolation) of the distances from
    each boundary voxel of one map to the nearest boundary voxel of the other is taken; HD95 is
    the larger of the two (MONAI's `compute_hausdorff_distance`, percentile=95). NaN where the
    label is in neither map, the image diagonal (`image_diagonal`) where it is in only one.
    """
    p, t = _pair(pred, truth, num_classes)
    s = _spacing(spacing, p.ndim)
    labels = _labels(num_classes, include_background)
    out = np.full(len(labels), np.nan, dtype=np.float64)
    in_pred = torch.bincount(p.reshape(-1), minlength=num_classes) > 0
    in_truth = torch.bincount(t.reshape(-1), minlength=num_classes) > 0
    both = []
    for i, label in enumerate(labels):
        in_p, in_t = bool(in_pred[label]), bool(in_truth[label])
        if in_p and in_t:
            both.append((i, label))
        elif in_p or in_t:
            out[i] = image_diagonal(tuple(p.shape), s)
    with warnings.catch_warnings():
        # MONAI >= 1.5 passes a deprecated argument to itself inside this call; the notice is
        # for MONAI's developers, not for our users.
        warnings.filterwarnings(
            "ignore", message=".*always_return_as_numpy", category=FutureWarning
        )
        for i, label in both:
            # One label at a time keeps memory at two boolean volumes whatever the label count.
            hd = compute_hausdorff_distance(
                (p == label)[None, None],
                (t == label)[None, None],
                include_background=True,
                percentile=95,
                spacing=s.tolist(),
            )
            out[i] = float(hd.reshape(-1)[0])
    return out


def segmentation_scores(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    num_classes: int,
    *,
    spacing: float | Sequence[float] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Foreground Dice and HD95 per label of one volume: {"labels", "dice", "hd95"}."""
    return {
        "labels": np.arange(1, num_classes),
        "dice": dice_per_label(pred, truth, num_classes),
        "hd95": hd95_per_label(pred, truth, num_classes, spacing=spacing),
    }


def nanmean(values: ArrayLike) -> float:
    """Mean over the finite entries; NaN (without a warning) when there are none."""
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def _classes(y_true: np.ndarray) -> np.ndarray:
    return np.unique(y_true)


def auroc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (scikit-learn).

    Binary: `scores` is (N,) scores of class 1, or (N, 2) probabilities. Multiclass: (N, K)
    scores, class k in column k; the result is the one-vs-rest macro average over the classes
    that have both positives and negatives in `y_true`. NaN, with a warning, when `y_true`
    holds a single class (AUROC is undefined then).
    """
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} samples, scores {tuple(s.shape)}")
    present = _classes(y)
    if present.size < 2:
        warnings.warn(
            f"AUROC is undefined when only one class ({present.tolist()}) is present; "
            "returning NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    if s.ndim == 1:
        if not set(present.tolist()) <= {0, 1}:
            raise ValueError(f"1-D scores need binary 0/1 labels, got classes {present.tolist()}")
        return float(roc_auc_score(y, s))
    if s.ndim != 2:
        raise ValueError(f"scores must be (N,) or (N, K), got shape {tuple(s.shape)}")
    if s.shape[1] == 2 and set(present.tolist()) <= {0, 1}:
        return float(roc_auc_score(y, s[:, 1]))
    if present.min() < 0 or present.max() >= s.shape[1]:
        raise ValueError(f"labels {present.tolist()} do not index the {s.shape[1]} score columns")
    return float(np.mean([roc_auc_score(y == k, s[:, k]) for k in present]))


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of predictions equal to the truth."""
    return float(accuracy_score(np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)))


def balanced_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean recall over the classes present in `y_true` (predictions of other classes count as
    errors)."""
    with warnings.catch_warnings():
        # scikit-learn warns when a prediction names a class absent from y_true; that is an
        # ordinary outcome on small test sets and is already scored as an error.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        return float(
            balanced_accuracy_score(np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1))
        )


def classification_scores(y_true: ArrayLike, probabilities: ArrayLike) -> dict[str, float]:
    """AUROC, accuracy and balanced accuracy from (N, K) class probabilities (column k is
    class k); the predicted class is the arg-max."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (N, K), got shape {tuple(p.shape)}")
    y = np.asarray(y_true).reshape(-1)
    pred = p.argmax(axis=1)
    return {
        "auroc": auroc(y, p),
        "accuracy": accuracy(y, pred),
        "balanced_accuracy": balanced_accuracy(y, pred),
    }
