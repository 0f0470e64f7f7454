"""TS2Vec's protocols: the SVM's C comes from the training set only (test labels never change
it), the ridge alpha from the validation split only, and forecasting pairs never cross the end
of their split; values are checked against slow references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.svm import SVC

from medssl.platform.evaluation.timeseries_protocols import (
    RIDGE_ALPHAS,
    SVM_C_GRID,
    forecast_pairs,
    forecast_samples,
    ridge_forecasting,
    select_ridge_alpha,
    select_svm_c,
    svm_classification,
)


def clusters(rng, per_class, num_classes, dim=6, spread=1.0):
    centres = rng.normal(size=(num_classes, dim)) * 3.0
    y = np.repeat(np.arange(num_classes), per_class)
    return centres[y] + rng.normal(size=(y.size, dim)) * spread, y


def test_grid_is_ts2vec_grid():
    assert SVM_C_GRID[:9] == tuple(10.0**k for k in range(-4, 5)) and math.isinf(SVM_C_GRID[-1])
    assert RIDGE_ALPHAS == (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _c_by_loop(x, y, folds):
    """Mean accuracy of every C over stratified folds taken in order, best first C on ties."""
    best, best_score = None, -1.0
    for c in SVM_C_GRID:
        scores = []
        for k in range(folds):
            test = np.zeros(len(y), dtype=bool)
            for label in np.unique(y):
                members = np.flatnonzero(y == label)
                sizes = np.full(folds, len(members) // folds)
                sizes[: len(members) % folds] += 1
                start = sizes[:k].sum()
                test[members[start : start + sizes[k]]] = True
            model = SVC(C=1e10 if math.isinf(c) else c, gamma="scale").fit(x[~test], y[~test])
            scores.append(float((model.predict(x[test]) == y[test]).mean()))
        if np.mean(scores) > best_score + 1e-12:
            best, best_score = c, float(np.mean(scores))
    return best


def test_svm_c_matches_a_cross_validation_loop():
    rng = np.random.default_rng(0)
    x, y = clusters(rng, 30, 2, spread=4.0)  # overlapping classes: C matters
    c, folds = select_svm_c(x, y)
    assert folds == 5
    assert c == _c_by_loop(x, y, 5)


def test_svm_c_never_sees_test_labels():
    rng = np.random.default_rng(1)
    x, y = clusters(rng, 25, 3, spread=3.0)
    xt, yt = clusters(rng, 20, 3, spread=3.0)
    first = svm_classification(x, y, xt, yt, details=True)
    for trial in range(3):
        shuffled = np.random.default_rng(trial).permutation(yt)
        again = svm_classification(x, y, xt, shuffled, details=True)
        assert again["C"] == first["C"] and again["folds"] == first["folds"] == 5
        np.testing.assert_array_equal(again["predictions"], first["predictions"])
        assert again["accuracy"] == pytest.approx(np.mean(first["predictions"] == shuffled))


def test_small_training_sets_use_the_hard_margin():
    rng = np.random.default_rng(2)
    x, y = clusters(rng, 12, 3)  # 36 series: fewer than 50, as ArrowHead's training set
    assert select_svm_c(x, y) == (math.inf, 0)
    xt, yt = clusters(rng, 10, 3)
    out = svm_classification(x, y, xt, yt, details=True)
    assert math.isinf(out["C"]) and out["folds"] == 0
    exact = SVC(C=np.inf, gamma="scale").fit(x, y)  # separable: the true hard margin converges
    np.testing.assert_array_equal(out["predictions"], exact.predict(xt))


def test_svm_scores_separable_data():
    rng = np.random.default_rng(3)
    for k in (2, 4):
        x, y = clusters(rng, 40, k, spread=0.2)
        order = rng.permutation(len(y))
        train, test = order[: len(y) // 2], order[len(y) // 2 :]
        out = svm_classification(x[train], y[train], x[test], y[test])
        assert out["accuracy"] == 1.0 and out["auroc"] == pytest.approx(1.0)


def test_forecast_pairs_stay_inside_the_split():
    for n, h, drop in [(10, 1, 0), (10, 3, 2), (50, 24, 0), (25, 24, 0)]:
        t, target = forecast_pairs(n, h, drop)
        assert len(t) == n - h - drop
        assert target.max() == n - 1 and target.min() == drop + 1
        np.testing.assert_array_equal(target[:, 0], t + 1)
        np.testing.assert_array_equal(np.diff(target, axis=1), 1)
    with pytest.raises(ValueError, match="no pair"):
        forecast_pairs(24, 24)


def test_forecast_samples_layout_matches_a_loop():
    rng = np.random.default_rng(4)
    reps, targets = rng.normal(size=(2, 12, 3)), rng.normal(size=(2, 12, 2))
    x, y = forecast_samples(reps, targets, horizon=4, drop=1)
    rows_x, rows_y = [], []
    for inst in range(2):
        for t in range(1, 12 - 4):
            rows_x.append(reps[inst, t])
            rows_y.append([targets[inst, t + 1 + s, c] for s in range(4) for c in range(2)])
    np.testing.assert_array_equal(x, rows_x)
    np.testing.assert_array_equal(y, rows_y)


def _ridge_by_hand(x, y, alpha):
    """Closed-form ridge with an unpenalised intercept, in float64."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return lambda z: (z - mx) @ w + my


def _forecast_splits(rng):
    """A noisy AR-like series whose 'representations' are lagged values plus noise."""
    n = 400
    series = np.cumsum(rng.normal(size=n)) * 0.1 + np.sin(np.arange(n) / 6)
    reps = np.stack([np.roll(series, k) for k in range(8)], 1) + rng.normal(size=(n, 8)) * 0.3
    target = series[:, None]
    return [(reps[a:b], target[a:b]) for a, b in [(0, 240), (240, 320), (320, 400)]]


def test_ridge_alpha_is_chosen_on_validation_only():
    rng = np.random.default_rng(5)
    train, val, test = _forecast_splits(rng)
    horizon = 3
    out = ridge_forecasting(train, val, test, horizon, details=True)
    xtr, ytr = forecast_samples(*train, horizon)
    xva, yva = forecast_samples(*val, horizon)
    xte, yte = forecast_samples(*test, horizon)
    scores = {}
    for alpha in RIDGE_ALPHAS:
        err = _ridge_by_hand(xtr, ytr, alpha)(xva) - yva
        scores[alpha] = np.sqrt(np.mean(err**2)) + np.mean(np.abs(err))
    assert out["alpha"] == min(scores, key=scores.get)
    for alpha, score in out["val_scores"].items():
        assert score == pytest.approx(scores[alpha], rel=1e-6)
    pred = _ridge_by_hand(xtr, ytr, out["alpha"])(xte)
    assert out["mse"] == pytest.approx(np.mean((pred - yte) ** 2), rel=1e-6)
    assert out["mae"] == pytest.approx(np.mean(np.abs(pred - yte)), rel=1e-6)
    val_err = _ridge_by_hand(xtr, ytr, out["alpha"])(xva) - yva
    assert out["val_mse"] == pytest.approx(np.mean(val_err**2), rel=1e-6)
    assert out["val_mae"] == pytest.approx(np.mean(np.abs(val_err)), rel=1e-6)
    scrambled = (test[0], rng.normal(size=test[1].shape) * 100)
    other = ridge_forecasting(train, val, scrambled, horizon)
    assert other["alpha"] == out["alpha"]
    assert (other["val_mse"], other["val_mae"]) == (out["val_mse"], out["val_mae"])
    alpha, _ = select_ridge_alpha(xtr, ytr, xva, yva)
    assert alpha == out["alpha"]


def test_cv_accuracy_is_the_training_folds_score_at_the_chosen_c():
    """cv_accuracy is sklearn's cross_val_score at the chosen C on the training set (the
    searched case and the small-set hard margin), and test arrays of garbage leave it as it is."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rng = np.random.default_rng(4)
    for per_class, folds in ((30, 5), (12, 5)):  # 60 series: searched; 36: too few to search
        x, y = clusters(rng, per_class, 3 if per_class == 12 else 2, spread=4.0)
        xt, yt = clusters(rng, 10, 3 if per_class == 12 else 2, spread=4.0)
        out = svm_classification(x, y, xt, yt, details=True)
        c = 1e10 if math.isinf(out["C"]) else out["C"]
        expected = cross_val_score(
            SVC(C=c, gamma="scale"), x, y, scoring="accuracy", cv=StratifiedKFold(folds)
        ).mean()
        assert out["folds"] == (folds if per_class == 30 else 0)
        assert out["cv_accuracy"] == pytest.approx(expected, abs=1e-12)
        assert 0.3 < out["cv_accuracy"] < 1.0  # overlapping classes: not a trivial score
        for garbage in (np.zeros_like(xt[:5]), rng.normal(size=xt.shape) * 1e6):
            labels = rng.permutation(yt)[: len(garbage)]
            again = svm_classification(x, y, garbage, labels)
            assert again["cv_accuracy"] == out["cv_accuracy"]


def test_cv_accuracy_is_nan_when_a_class_has_one_series():
    rng = np.random.default_rng(5)
    x, y = clusters(rng, 6, 2)
    x, y = x[:7], y[:7]  # class 1 keeps one series
    out = svm_classification(x, y, x, y, details=True)
    assert out["folds"] == 0 and math.isnan(out["cv_accuracy"])
