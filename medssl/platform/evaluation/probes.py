"""Probes on frozen features: cross-validated logistic and ridge regression, and kNN (weighted
votes for classes, the mean for continuous targets).

They measure what an encoder learnt without training it; test labels are used only to score.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from medssl.platform.evaluation.metrics import classification_scores

#: Inverse regularisation strengths searched by the linear probe's cross-validation.
DEFAULT_CS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)

Features = np.ndarray | torch.Tensor
Labels = np.ndarray | torch.Tensor | Sequence[int]


def _features(x: Features, name: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty (samples, features) matrix, got shape {a.shape}"
        )
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values; check the encoder's output")
    return a


def _labels(y: Labels, name: str, n: int) -> np.ndarray:
    a = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    a = a.reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} labels for {n} feature rows")
    if a.dtype.kind == "f":
        if not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integer class labels, got non-integer values")
        a = a.astype(np.int64)
    return a


def prepare_probe_data(
    train_x: Features,
    train_y: Labels,
    test_x: Features,
    test_y: Labels,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes and map labels to class indices 0..K-1.

    The classes are 0..num_classes-1 when given, else every label seen in train or test.
    Raises ValueError naming any class that has no training sample.
    """
    xtr, xte = _features(train_x, "train_x"), _features(test_x, "test_x")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train_x has {xtr.shape[1]} features, test_x {xte.shape[1]}")
    ytr = _labels(train_y, "train_y", xtr.shape[0])
    yte = _labels(test_y, "test_y", xte.shape[0])
    if num_classes is not None:
        classes = np.arange(num_classes)
        outside = sorted(set(np.concatenate([ytr, yte]).tolist()) - set(classes.tolist()))
        if outside:
            raise ValueError(f"labels {outside} are outside 0..{num_classes - 1} (num_classes)")
    else:
        classes = np.unique(np.concatenate([ytr, yte]))
    if classes.size < 2:
        raise ValueError(f"a probe needs at least two classes, got {classes.tolist()}")
    missing = sorted(set(classes.tolist()) - set(ytr.tolist()))
    if missing:
        raise ValueError(
            f"class(es) {missing} have no training sample; raise the label budget or drop them"
        )
    return xtr, np.searchsorted(classes, ytr), xte, np.searchsorted(classes, yte), classes


def _result(
    y_index: np.ndarray, probabilities: np.ndarray, details: bool, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = dict(classification_scores(y_index, probabilities))
    if details:
        out.update(extra, probabilities=probabilities)
    return out


def linear_probe(
    train_x: Features,
    train_y: Labels,
    test_x: Features,
    test_y: Labels,
    *,
    seed: int = 0,
    cs: Sequence[float] = DEFAULT_CS,
    max_folds: int = 5,
    num_classes: int | None = None,
    details: bool = False,
) -> dict[str, Any]:
    """Logistic regression on standardised frozen features.

    The scaler is fitted on the training features only, and the inverse regularisation C is
    chosen from `cs` by stratified k-fold cross-validation (log-loss) on the training set only;
    k = min(`max_folds`, size of the smallest training class). When a class has a single
    training sample no split is possible and C = 1. The test set is touched once, to score.

    Returns {"auroc", "accuracy", "balanced_accuracy"}; with `details` also "C", "folds" (0 when
    no split was possible) and "probabilities" (n_test, K), column k the k-th class in sorted
    order. Labels may be any integers; a class absent from train raises ValueError.

    Example:
        >>> x = np.r_[np.zeros((4, 2)), np.ones((4, 2))]; y = np.r_[np.zeros(4), np.ones(4)]
        >>> linear_probe(x, y, x, y)["accuracy"]
        1.0
    """
    if not cs or any(c <= 0 for c in cs):
        raise ValueError(f"cs must be positive inverse regularisation strengths, got {cs}")
    if max_folds < 2:
        raise ValueError(f"max_folds must be >= 2, got {max_folds}")
    xtr, ytr, xte, yte, classes = prepare_probe_data(train_x, train_y, test_x, test_y, num_classes)
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(max_iter=5000, random_state=seed)),
        ]
    )
    folds = int(min(max_folds, np.bincount(ytr, minlength=classes.size).min()))
    if folds >= 2:
        search = GridSearchCV(
            pipeline,
            {"logreg__C": list(cs)},
            scoring="neg_log_loss",
            cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
            refit=True,
        )
        search.fit(xtr, ytr)
        model = search.best_estimator_
        best_c = float(search.best_params_["logreg__C"])
    else:
        folds, best_c = 0, 1.0
        model = pipeline.set_params(logreg__C=best_c).fit(xtr, ytr)
    probabilities = model.predict_proba(xte)
    return _result(yte, probabilities, details, C=best_c, folds=folds)


def knn_probe(
    train_x: Features,
    train_y: Labels,
    test_x: Features,
    test_y: Labels,
    *,
    k: int = 20,
    cosine: bool = True,
    temperature: float = 0.07,
    num_classes: int | None = None,
    details: bool = False,
    chunk_size: int = 1024,
) -> dict[str, Any]:
    """Weighted-vote k-nearest-neighbour classifier (Wu et al., 2018, "Unsupervised Feature
    Learning via Non-Parametric Instance Discrimination", the protocol used by DINO).

    With `cosine` the features are L2-normalised and the similarity is their dot product;
    otherwise it is minus the Euclidean distance. Each of the k most similar training samples
    votes for its class with weight exp(similarity / temperature); the class probabilities are
    the normalised votes. k is capped at the training set size.

    Returns {"auroc", "accuracy", "balanced_accuracy"}; with `details` also "k" (as used) and
    "probabilities" (n_test, K).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    xtr, ytr, xte, yte, classes = prepare_probe_data(train_x, train_y, test_x, test_y, num_classes)
    train = torch.from_numpy(xtr)
    test = torch.from_numpy(xte)
    if cosine:
        train = torch.nn.functional.normalize(train, dim=1)
        test = torch.nn.functional.normalize(test, dim=1)
    k_used = min(k, train.shape[0])
    targets = torch.from_numpy(ytr)
    parts = []
    for start in range(0, test.shape[0], chunk_size):
        block = test[start : start + chunk_size]
        sim = block @ train.T if cosine else -torch.cdist(block, train)
        top_sim, top_idx = sim.topk(k_used, dim=1)
        # Shifting by the row maximum leaves the normalised votes unchanged and keeps exp finite.
        weights = torch.exp((top_sim - top_sim[:, :1]) / temperature)
        votes = torch.zeros(block.shape[0], classes.size, dtype=weights.dtype)
        votes.scatter_add_(1, targets[top_idx], weights)
        parts.append(votes / votes.sum(dim=1, keepdim=True))
    probabilities = torch.cat(parts).numpy()
    return _result(yte, probabilities, details, k=k_used)


#: Ridge penalties searched by the ridge probe's cross-validation (on standardised features).
DEFAULT_ALPHAS: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


def _targets(y: Labels | Sequence[float], name: str, n: int) -> np.ndarray:
    a = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    a = a.reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} targets for {n} feature rows")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numeric regression targets, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite targets; drop those samples before probing")
    return a


def _regression_data(
    train_x: Features, train_y: Any, test_x: Features, test_y: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xtr, xte = _features(train_x, "train_x"), _features(test_x, "test_x")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train_x has {xtr.shape[1]} features, test_x {xte.shape[1]}")
    ytr = _targets(train_y, "train_y", xtr.shape[0])
    yte = _targets(test_y, "test_y", xte.shape[0])
    return xtr, ytr, xte, yte


def _regression_result(
    y_true: np.ndarray, predictions: np.ndarray, details: bool, **extra: Any
) -> dict[str, Any]:
    error = predictions - y_true
    spread = float(np.sum((y_true - y_true.mean()) ** 2))
    if spread > 0:
        r2 = 1.0 - float(np.sum(error**2)) / spread
    else:
        warnings.warn(
            "R^2 is undefined when every test target is equal; returning NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        r2 = float("nan")
    out: dict[str, Any] = {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": r2,
    }
    if details:
        out.update(extra, predictions=predictions)
    return out


def ridge_probe(
    train_x: Features,
    train_y: Any,
    test_x: Features,
    test_y: Any,
    *,
    seed: int = 0,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    max_folds: int = 5,
    details: bool = False,
) -> dict[str, Any]:
    """Ridge regression on standardised frozen features (the age / BMI probes of Abbaspourazad
    et al., ICLR 2024): w = argmin ||y - X w - b||^2 + alpha ||w||^2.

    The scaler is fitted on the training features only (inside each fold during the search),
    and alpha is chosen from `alphas` by shuffled k-fold cross-validation (mean squared error)
    on the training set only; k = min(`max_folds`, training set size). With a single training
    sample no split is possible and alpha = 1. The test set is touched once, to score.

    Returns {"mae", "rmse", "r2"} (R^2 is NaN, with a warning, when the test targets are all
    equal); with `details` also "alpha", "folds" (0 when no split was possible) and
    "predictions" (n_test,). NaN or infinite features or targets raise ValueError naming which.

    Example:
        >>> x = np.arange(10.0)[:, None]; y = 2 * x[:, 0] + 1
        >>> round(ridge_probe(x, y, x, y, alphas=(1e-6,))["mae"], 3)
        0.0
    """
    if not alphas or any(not a > 0 for a in alphas):
        raise ValueError(f"alphas must be positive ridge penalties, got {alphas}")
    if max_folds < 2:
        raise ValueError(f"max_folds must be >= 2, got {max_folds}")
    xtr, ytr, xte, yte = _regression_data(train_x, train_y, test_x, test_y)
    pipeline = Pipeline([("scale", StandardScaler()), ("ridge", Ridge())])
    folds = int(min(max_folds, xtr.shape[0]))
    if folds >= 2:
        search = GridSearchCV(
            pipeline,
            {"ridge__alpha": [float(a) for a in alphas]},
            scoring="neg_mean_squared_error",
            cv=KFold(n_splits=folds, shuffle=True, random_state=seed),
            refit=True,
        )
        search.fit(xtr, ytr)
        model = search.best_estimator_
        best_alpha = float(search.best_params_["ridge__alpha"])
    else:
        folds, best_alpha = 0, 1.0
        model = pipeline.set_params(ridge__alpha=best_alpha).fit(xtr, ytr)
    predictions = np.asarray(model.predict(xte), dtype=np.float64)
    return _regression_result(yte, predictions, details, alpha=best_alpha, folds=folds)


def knn_regression_probe(
    train_x: Features,
    train_y: Any,
    test_x: Features,
    test_y: Any,
    *,
    k: int = 20,
    details: bool = False,
    chunk_size: int = 1024,
) -> dict[str, Any]:
    """k-nearest-neighbour regression on L2-normalised frozen features: the prediction is the
    plain mean target of the k training samples of highest cosine similarity (k capped at the
    training set size).

    Returns {"mae", "rmse", "r2"}; with `details` also "k" (as used) and "predictions".

    Example:
        >>> x = np.array([[1.0, 0.0], [0.0, 1.0]]); y = np.array([3.0, 5.0])
        >>> knn_regression_probe(x, y, x, y, k=1)["mae"]
        0.0
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    xtr, ytr, xte, yte = _regression_data(train_x, train_y, test_x, test_y)
    train = torch.nn.functional.normalize(torch.from_numpy(xtr), dim=1)
    test = torch.nn.functional.normalize(torch.from_numpy(xte), dim=1)
    targets = torch.from_numpy(ytr)
    k_used = min(k, train.shape[0])
    parts = []
    for start in range(0, test.shape[0], chunk_size):
        _, top_idx = (test[start : start + chunk_size] @ train.T).topk(k_used, dim=1)
        parts.append(targets[top_idx].mean(dim=1))
    predictions = torch.cat(parts).numpy()
    return _regression_result(yte, predictions, details, k=k_used)
