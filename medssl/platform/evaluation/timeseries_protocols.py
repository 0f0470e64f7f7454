"""TS2Vec's evaluation protocols for time-series representations: an RBF SVM on pooled series
representations (classification) and a ridge map from per-step representations to the next H
values (forecasting). Hyper-parameters are chosen on training or validation data only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedKFold,
    cross_val_score,
    train_test_split,
)
from sklearn.svm import SVC

from medssl.platform.evaluation.metrics import accuracy, auroc, balanced_accuracy
from medssl.platform.evaluation.probes import Features, Labels, prepare_probe_data

#: TS2Vec's SVM grid: C = 10^k, k in -4..4, plus an infinite C (hard margin).
SVM_C_GRID: tuple[float, ...] = tuple(10.0**k for k in range(-4, 5)) + (math.inf,)
#: What an infinite C is fitted as. libsvm with C = inf never converges when the training
#: points are not separable (equal representations with different labels), while a finite
#: box this large is the hard-margin solution whenever they are, since no dual coefficient
#: comes near it.
HARD_MARGIN_C = 1e10
#: TS2Vec's ridge penalties, chosen on the validation split.
RIDGE_ALPHAS: tuple[float, ...] = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _libsvm_c(c: float) -> float:
    return HARD_MARGIN_C if math.isinf(c) else float(c)


def select_svm_c(
    train_x: np.ndarray,
    train_y: np.ndarray,
    *,
    c_grid: Sequence[float] = SVM_C_GRID,
    max_folds: int = 5,
    min_per_class: int = 5,
    min_train: int = 50,
    max_cv_samples: int = 10_000,
    seed: int = 0,
) -> tuple[float, int]:
    """C for an RBF SVM (gamma "scale") by stratified k-fold accuracy on the training set.

    As in TS2Vec, when the training set is small (fewer than `min_train` series, or fewer
    than `min_per_class` series per class on average) no cross-validation is run and the
    hard-margin C = inf is returned. k = min(`max_folds`, smallest class size); folds are
    taken in order (TS2Vec's `cv=5`). Ties go to the smaller C. More than `max_cv_samples`
    training series are subsampled (stratified, `seed`) for the search only.
    Returns (C, k), k = 0 when no cross-validation was run.
    """
    if not c_grid or any(not c > 0 for c in c_grid):
        raise ValueError(f"c_grid must hold positive values, got {list(c_grid)}")
    if max_folds < 2:
        raise ValueError(f"max_folds must be >= 2, got {max_folds}")
    _, counts = np.unique(train_y, return_counts=True)
    n = train_x.shape[0]
    folds = int(min(max_folds, counts.min()))
    if n // counts.size < min_per_class or n < min_train or folds < 2:
        return math.inf, 0
    if n > max_cv_samples:
        train_x, _, train_y, _ = train_test_split(
            train_x, train_y, train_size=max_cv_samples, random_state=seed, stratify=train_y
        )
    grid = [_libsvm_c(c) for c in c_grid]
    search = GridSearchCV(
        SVC(kernel="rbf", gamma="scale"),
        {"C": grid},
        scoring="accuracy",
        cv=StratifiedKFold(n_splits=folds),
        refit=False,
    )
    search.fit(train_x, train_y)
    return float(c_grid[int(search.best_index_)]), folds


def svm_cv_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    c: float,
    *,
    max_folds: int = 5,
    max_cv_samples: int = 10_000,
    seed: int = 0,
) -> float:
    """Mean accuracy of an RBF SVM with this C over the stratified training folds that
    `select_svm_c` searches (k = min(`max_folds`, smallest class), in order; the same subsample
    above `max_cv_samples`): at the C it chose, the search's own score. Training data only, so
    it can choose settings where the test set must not. Below 50 series, where `select_svm_c`
    runs no search, the same k folds at its hard margin; NaN when a class has one series.

    Example:
        >>> x = np.r_[np.zeros((4, 2)), np.ones((4, 2))]; y = np.r_[np.zeros(4), np.ones(4)]
        >>> svm_cv_accuracy(x, y, math.inf)
        1.0
    """
    _, counts = np.unique(train_y, return_counts=True)
    folds = int(min(max_folds, counts.min()))
    if folds < 2:
        return math.nan
    if train_x.shape[0] > max_cv_samples:
        train_x, _, train_y, _ = train_test_split(
            train_x, train_y, train_size=max_cv_samples, random_state=seed, stratify=train_y
        )
    model = SVC(C=_libsvm_c(c), kernel="rbf", gamma="scale")
    cv = StratifiedKFold(n_splits=folds)
    return float(np.mean(cross_val_score(model, train_x, train_y, scoring="accuracy", cv=cv)))


def svm_classification(
    train_x: Features,
    train_y: Labels,
    test_x: Features,
    test_y: Labels,
    *,
    c_grid: Sequence[float] = SVM_C_GRID,
    max_folds: int = 5,
    seed: int = 0,
    num_classes: int | None = None,
    details: bool = False,
) -> dict[str, Any]:
    """TS2Vec's classification protocol (Yue et al., AAAI 2022, section 4.1): an RBF SVM on
    instance-level representations (the caller max-pools each series over time), with C
    chosen by `select_svm_c` on the training set only; the test set is touched once, to score.

    Returns {"accuracy", "balanced_accuracy", "auroc"} (AUROC from the SVM's decision values,
    one-vs-rest macro average for more than two classes; NaN when the test set holds one
    class) and "cv_accuracy", from the training set alone (`svm_cv_accuracy` at the chosen C):
    the score to select settings by. With `details` also "C" (math.inf for the hard margin,
    fitted as HARD_MARGIN_C), "folds" (0: no search, see `select_svm_c`) and "predictions".

    Example:
        >>> x = np.r_[np.zeros((4, 2)), np.ones((4, 2))]; y = np.r_[np.zeros(4), np.ones(4)]
        >>> svm_classification(x, y, x, y)["accuracy"]
        1.0
    """
    xtr, ytr, xte, yte, classes = prepare_probe_data(train_x, train_y, test_x, test_y, num_classes)
    c, folds = select_svm_c(xtr, ytr, c_grid=c_grid, max_folds=max_folds, seed=seed)
    cv_accuracy = svm_cv_accuracy(xtr, ytr, c, max_folds=max_folds, seed=seed)
    model = SVC(C=_libsvm_c(c), kernel="rbf", gamma="scale").fit(xtr, ytr)
    predictions = model.predict(xte)
    scores = model.decision_function(xte)
    out: dict[str, Any] = {
        "accuracy": accuracy(yte, predictions),
        "balanced_accuracy": balanced_accuracy(yte, predictions),
        # prepare_probe_data guarantees every class is in train, so the decision columns are
        # classes 0..K-1 (binary: one column of class-1 scores), as auroc expects.
        "auroc": auroc(yte, scores),
        "cv_accuracy": cv_accuracy,
    }
    if details:
        out.update(C=c, folds=folds, predictions=predictions)
    return out


def forecast_pairs(n_steps: int, horizon: int, drop: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(representation index t, target indices t+1..t+H) pairs inside one split of `n_steps`.

    The representation at t has seen steps up to t (causal encoding); its target is the next
    `horizon` steps, and every target index is < n_steps, so no target of a split reaches
    past the split's end. `drop` skips the first steps (TS2Vec drops the 200 padding steps of
    the training split, whose representations lack their full context).
    Returns int64 arrays (M,) and (M, horizon), M = n_steps - horizon - drop.

    Example:
        >>> t, target = forecast_pairs(5, 2)
        >>> t.tolist(), target.tolist()
        ([0, 1, 2], [[1, 2], [2, 3], [3, 4]])
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 step, got {horizon}")
    if drop < 0:
        raise ValueError(f"drop must be >= 0, got {drop}")
    if n_steps - horizon - drop < 1:
        raise ValueError(
            f"a split of {n_steps} steps holds no pair for horizon {horizon} after dropping "
            f"{drop} steps; use a shorter horizon or a longer split"
        )
    t = np.arange(drop, n_steps - horizon, dtype=np.int64)
    return t, t[:, None] + 1 + np.arange(horizon, dtype=np.int64)[None, :]


def _as_instances(a: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    x = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, float)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name} must be (T, D) or (instances, T, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def forecast_samples(
    representations: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    horizon: int,
    drop: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Regression samples of one split: X (M, D) representations at t and Y (M, H * C) the
    targets of steps t+1..t+H (step-major, as TS2Vec flattens them). `representations` is
    (T, D) or (instances, T, D); `targets` (T, C) or (instances, T, C) of the same split."""
    reps, tgt = _as_instances(representations, "representations"), _as_instances(targets, "targets")
    if reps.shape[:2] != tgt.shape[:2]:
        raise ValueError(
            f"representations {reps.shape} and targets {tgt.shape} must cover the same "
            "instances and steps"
        )
    t, window = forecast_pairs(reps.shape[1], horizon, drop)
    x = reps[:, t].reshape(-1, reps.shape[2])
    y = tgt[:, window].reshape(-1, horizon * tgt.shape[2])
    return x, y


def select_ridge_alpha(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    alphas: Sequence[float] = RIDGE_ALPHAS,
) -> tuple[float, dict[float, float]]:
    """The ridge penalty with the lowest validation RMSE + MAE (TS2Vec's criterion), and the
    score of every candidate. Ties go to the first alpha listed."""
    if not alphas or any(not a > 0 for a in alphas):
        raise ValueError(f"alphas must be positive, got {list(alphas)}")
    scores: dict[float, float] = {}
    for alpha in alphas:
        error = Ridge(alpha=alpha).fit(train_x, train_y).predict(val_x) - val_y
        scores[float(alpha)] = float(np.sqrt(np.mean(error**2)) + np.mean(np.abs(error)))
    best = min(scores, key=lambda a: scores[a])
    return best, scores


def ridge_forecasting(
    train: tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor],
    val: tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor],
    test: tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor],
    horizon: int,
    *,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    train_drop: int = 0,
    details: bool = False,
) -> dict[str, Any]:
    """TS2Vec's forecasting protocol (Yue et al., AAAI 2022, section 4.2): ridge regression
    from the causal representation at t to the next `horizon` values, alpha chosen on the
    validation split, MSE and MAE on the test split.

    Each split is (representations (T, D) or (instances, T, D), targets (T, C) or
    (instances, T, C)), the targets already normalised with training statistics; pairs never
    cross a split's end (`forecast_pairs`). `train_drop` skips the first training steps
    (TS2Vec: 200, its sliding padding).

    Returns {"mse", "mae", "alpha", "val_mse", "val_mae"} (val_*: the validation split's
    errors at the chosen alpha, for choosing pretraining settings without the test split);
    with `details` also "val_scores" (alpha -> RMSE + MAE)
    and "predictions" / "truth" (M, horizon, C).
    """
    xtr, ytr = forecast_samples(*train, horizon, drop=train_drop)
    xva, yva = forecast_samples(*val, horizon)
    xte, yte = forecast_samples(*test, horizon)
    alpha, scores = select_ridge_alpha(xtr, ytr, xva, yva, alphas)
    model = Ridge(alpha=alpha).fit(xtr, ytr)
    prediction = model.predict(xte)
    val_error = model.predict(xva) - yva
    out: dict[str, Any] = {
        "mse": float(np.mean((prediction - yte) ** 2)),
        "mae": float(np.mean(np.abs(prediction - yte))),
        "alpha": alpha,
        "val_mse": float(np.mean(val_error**2)),
        "val_mae": float(np.mean(np.abs(val_error))),
    }
    if details:
        shape = (-1, horizon, yte.shape[1] // horizon)
        out.update(
            val_scores=scores, predictions=prediction.reshape(shape), truth=yte.reshape(shape)
        )
    return out
