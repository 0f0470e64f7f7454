"""Ridge and kNN regression probes: predictions equal a numpy closed-form ridge and a loop kNN,
alpha is the one a slow cross-validation loop picks, test targets never reach the search, and
bad targets or features are refused by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold

from medssl.platform.evaluation.probes import knn_regression_probe, ridge_probe

ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


def noisy_linear(rng: np.random.Generator, n: int, dim: int = 12, noise: float = 1.0):
    w = rng.normal(size=dim)
    x = rng.normal(size=(n, dim)) * rng.uniform(0.5, 5.0, size=dim) + rng.normal(size=dim)
    return x, x @ w + 3.0 + noise * rng.normal(size=n)


def reference_ridge(train_x, train_y, test_x, alpha):
    """Closed form on features standardised with the training mean and population std."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    xs, ts = (train_x - mean) / std, (test_x - mean) / std
    centre = train_y.mean()
    # Standardised columns have mean zero, so the intercept is the mean target.
    w = np.linalg.solve(xs.T @ xs + alpha * np.eye(xs.shape[1]), xs.T @ (train_y - centre))
    return ts @ w + centre


def reference_scores(y, pred):
    n = len(y)
    mae = sum(abs(pred[i] - y[i]) for i in range(n)) / n
    rmse = math.sqrt(sum((pred[i] - y[i]) ** 2 for i in range(n)) / n)
    mean = sum(y) / n
    r2 = 1 - sum((pred[i] - y[i]) ** 2 for i in range(n)) / sum((v - mean) ** 2 for v in y)
    return {"mae": mae, "rmse": rmse, "r2": r2}


def reference_cv_alpha(x, y, alphas, folds, seed):
    errors = []
    for alpha in alphas:
        fold_mse = []
        for fit, held in KFold(n_splits=folds, shuffle=True, random_state=seed).split(x):
            pred = reference_ridge(x[fit], y[fit], x[held], alpha)
            fold_mse.append(np.mean((pred - y[held]) ** 2))
        errors.append(np.mean(fold_mse))
    return alphas[int(np.argmin(errors))]


def test_ridge_matches_closed_form_with_the_cross_validated_alpha():
    rng = np.random.default_rng(0)
    x, y = noisy_linear(rng, 70, noise=3.0)
    train_x, train_y, test_x, test_y = x[:40], y[:40], x[40:], y[40:]
    out = ridge_probe(train_x, train_y, test_x, test_y, alphas=ALPHAS, details=True)
    assert set(out) == {"mae", "rmse", "r2", "alpha", "folds", "predictions"}
    assert out["folds"] == 5
    expected_alpha = reference_cv_alpha(train_x, train_y, ALPHAS, 5, seed=0)
    assert out["alpha"] == expected_alpha
    # An interior choice shows the search actually discriminates between penalties.
    assert ALPHAS[0] < out["alpha"] < ALPHAS[-1]
    pred = reference_ridge(train_x, train_y, test_x, out["alpha"])
    np.testing.assert_allclose(out["predictions"], pred, rtol=1e-8, atol=1e-8)
    for key, value in reference_scores(test_y, pred).items():
        assert out[key] == pytest.approx(value, rel=1e-8)


def test_ridge_search_never_sees_test_targets():
    rng = np.random.default_rng(1)
    x, y = noisy_linear(rng, 60, noise=2.0)
    train_x, train_y, test_x, test_y = x[:35], y[:35], x[35:], y[35:]
    first = ridge_probe(train_x, train_y, test_x, test_y, alphas=ALPHAS, details=True)
    shuffled = rng.permutation(test_y) * 10.0 - 50.0
    second = ridge_probe(train_x, train_y, test_x, shuffled, alphas=ALPHAS, details=True)
    assert first["alpha"] == second["alpha"]
    np.testing.assert_array_equal(first["predictions"], second["predictions"])
    assert first["mae"] != second["mae"]


def test_ridge_recovers_a_noiseless_linear_target():
    rng = np.random.default_rng(2)
    x, y = noisy_linear(rng, 80, noise=0.0)
    out = ridge_probe(x[:50], y[:50], x[50:], y[50:], alphas=(1e-6, 1.0, 1e3))
    assert out["r2"] > 0.999999 and out["mae"] < 1e-3


def test_ridge_folds_follow_the_training_size():
    rng = np.random.default_rng(3)
    x, y = noisy_linear(rng, 8, dim=3)
    out = ridge_probe(x[:3], y[:3], x[3:], y[3:], details=True)
    assert out["folds"] == 3
    single = ridge_probe(x[:1], y[:1], x[3:], y[3:], details=True)
    assert single["folds"] == 0 and single["alpha"] == 1.0
    np.testing.assert_allclose(single["predictions"], np.full(5, y[0]))


def test_ridge_accepts_tensors_and_integer_targets():
    rng = np.random.default_rng(4)
    x, y = noisy_linear(rng, 30, dim=4)
    y_int = np.round(y).astype(np.int64)
    from_numpy = ridge_probe(x[:20], y_int[:20], x[20:], y_int[20:], details=True)
    from_torch = ridge_probe(
        torch.from_numpy(x[:20]).float(),
        torch.from_numpy(y_int[:20]),
        torch.from_numpy(x[20:]).float(),
        torch.from_numpy(y_int[20:]),
        details=True,
    )
    assert from_torch["alpha"] == from_numpy["alpha"]
    np.testing.assert_allclose(from_torch["predictions"], from_numpy["predictions"], rtol=1e-4)


def loop_knn(train_x, train_y, test_x, k):
    preds = []
    for row in test_x:
        sims = []
        for j, other in enumerate(train_x):
            dot = sum(float(a) * float(b) for a, b in zip(row, other, strict=True))
            norm = math.sqrt(sum(float(a) ** 2 for a in row)) * math.sqrt(
                sum(float(b) ** 2 for b in other)
            )
            sims.append((dot / norm, j))
        nearest = sorted(sims, reverse=True)[: min(k, len(train_x))]
        preds.append(sum(train_y[j] for _, j in nearest) / len(nearest))
    return np.array(preds)


@pytest.mark.parametrize("k", [1, 4, 20, 100])
def test_knn_regression_matches_a_loop(k):
    rng = np.random.default_rng(5)
    train_x, train_y = rng.normal(size=(30, 6)) * 3.0, rng.normal(size=30) * 10.0
    test_x, test_y = rng.normal(size=(9, 6)), rng.normal(size=9) * 10.0
    out = knn_regression_probe(train_x, train_y, test_x, test_y, k=k, details=True, chunk_size=4)
    assert out["k"] == min(k, 30)
    pred = loop_knn(train_x, train_y, test_x, k)
    np.testing.assert_allclose(out["predictions"], pred, rtol=1e-10)
    for key, value in reference_scores(test_y, pred).items():
        assert out[key] == pytest.approx(value, rel=1e-10)
    assert set(knn_regression_probe(train_x, train_y, test_x, test_y, k=k)) == {
        "mae",
        "rmse",
        "r2",
    }


def test_knn_regression_uses_direction_not_length():
    # [1, 0.2] is nearer [0, 1] in Euclidean distance but points along [10, 0].
    train_x = np.array([[10.0, 0.0], [0.0, 1.0]])
    out = knn_regression_probe(train_x, [2.0, 7.0], [[1.0, 0.2], [0.1, 3.0]], [2.0, 7.0], k=1)
    assert out["mae"] == 0.0 and out["r2"] == 1.0


PROBES = [
    pytest.param(ridge_probe, id="ridge"),
    pytest.param(knn_regression_probe, id="knn"),
]


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_targets_and_features_are_named(probe, bad):
    x, y = np.random.default_rng(6).normal(size=(10, 3)), np.arange(10.0)
    bad_y = y.copy()
    bad_y[4] = bad
    with pytest.raises(ValueError, match="train_y holds NaN or infinite targets"):
        probe(x, bad_y, x, y)
    with pytest.raises(ValueError, match="test_y holds NaN or infinite targets"):
        probe(x, y, x, bad_y)
    bad_x = x.copy()
    bad_x[2, 1] = bad
    with pytest.raises(ValueError, match="test_x holds NaN or infinite values"):
        probe(x, y, bad_x, y)


@pytest.mark.parametrize("probe", PROBES)
def test_shape_and_type_errors(probe):
    x = np.zeros((5, 2)) + np.arange(5)[:, None]
    with pytest.raises(ValueError, match="train_y has 4 targets for 5 feature rows"):
        probe(x, np.arange(4.0), x, np.arange(5.0))
    with pytest.raises(ValueError, match="train_x has 2 features, test_x 3"):
        probe(x, np.arange(5.0), np.ones((5, 3)), np.arange(5.0))
    with pytest.raises(ValueError, match="must hold numeric regression targets"):
        probe(x, ["a"] * 5, x, np.arange(5.0))


@pytest.mark.parametrize("probe", PROBES)
def test_constant_test_targets_give_nan_r2_with_a_warning(probe):
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=12)
    with pytest.warns(RuntimeWarning, match="R\\^2 is undefined"):
        out = probe(x, y, x[:3], np.full(3, 2.0))
    assert math.isnan(out["r2"]) and out["mae"] >= 0


def test_bad_arguments_name_the_value():
    x, y = np.eye(4), np.arange(4.0)
    with pytest.raises(ValueError, match=r"alphas must be positive ridge penalties, got \(0.0,\)"):
        ridge_probe(x, y, x, y, alphas=(0.0,))
    with pytest.raises(ValueError, match="max_folds must be >= 2, got 1"):
        ridge_probe(x, y, x, y, max_folds=1)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        knn_regression_probe(x, y, x, y, k=0)
