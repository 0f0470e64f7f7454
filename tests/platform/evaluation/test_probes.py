"""Linear and kNN probes: separable data is solved, random labels stay at chance, test labels
never change a prediction, tiny label budgets work, and the kNN vote matches a slow loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medssl.platform.evaluation.probes import knn_probe, linear_probe

PROBES = [
    pytest.param(lambda *a, **k: linear_probe(*a, seed=0, **k), id="linear"),
    pytest.param(lambda *a, **k: knn_probe(*a, k=5, **k), id="knn"),
]


def clusters(rng: np.random.Generator, per_class: int, num_classes: int, dim: int = 8):
    centres = rng.normal(size=(num_classes, dim)) * 10.0
    y = np.repeat(np.arange(num_classes), per_class)
    x = centres[y] + rng.normal(size=(y.size, dim))
    return x, y


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("num_classes", [2, 3])
def test_separable_clusters_are_solved(probe, num_classes):
    rng = np.random.default_rng(num_classes)
    train_x, train_y = clusters(rng, 10, num_classes)
    test_x, test_y = train_x + rng.normal(scale=0.1, size=train_x.shape), train_y
    out = probe(train_x, train_y, test_x, test_y)
    assert set(out) == {"auroc", "accuracy", "balanced_accuracy"}
    assert out["accuracy"] == 1.0 and out["balanced_accuracy"] == 1.0
    assert out["auroc"] == pytest.approx(1.0)


@pytest.mark.parametrize("probe", PROBES)
def test_random_labels_stay_near_chance(probe):
    rng = np.random.default_rng(7)
    train_x, test_x = rng.normal(size=(200, 16)), rng.normal(size=(400, 16))
    train_y, test_y = rng.integers(0, 2, 200), rng.integers(0, 2, 400)
    out = probe(train_x, train_y, test_x, test_y)
    assert abs(out["accuracy"] - 0.5) < 0.1
    assert abs(out["balanced_accuracy"] - 0.5) < 0.1
    assert abs(out["auroc"] - 0.5) < 0.1


@pytest.mark.parametrize("probe", PROBES)
def test_test_labels_do_not_change_predictions(probe):
    rng = np.random.default_rng(3)
    train_x, train_y = clusters(rng, 12, 3)
    train_x = train_x + rng.normal(scale=8.0, size=train_x.shape)  # overlapping: C matters
    test_x, test_y = clusters(rng, 15, 3)
    first = probe(train_x, train_y, test_x, test_y, details=True)
    shuffled = rng.permutation(test_y)
    second = probe(train_x, train_y, test_x, shuffled, details=True)
    np.testing.assert_array_equal(first["probabilities"], second["probabilities"])
    assert first["probabilities"].shape == (45, 3)
    np.testing.assert_allclose(first["probabilities"].sum(axis=1), 1.0)


def test_linear_probe_tiny_budgets_use_fewer_folds():
    rng = np.random.default_rng(4)
    x, y = clusters(rng, 2, 2)
    out = linear_probe(x, y, x, y, seed=0, details=True)
    assert out["folds"] == 2 and out["accuracy"] == 1.0
    x3 = np.r_[x, x[:1] + 0.1]
    y3 = np.r_[np.zeros(1, int), np.ones(4, int)]  # class 0 has a single sample
    out = linear_probe(x3, y3, x3, y3, seed=0, details=True)
    assert out["folds"] == 0 and out["C"] == 1.0


def test_linear_probe_cross_validates_c_on_train():
    rng = np.random.default_rng(5)
    x, y = clusters(rng, 20, 2)
    out = linear_probe(x, y, x, y, seed=0, cs=(0.01, 1.0), details=True)
    assert out["folds"] == 5 and out["C"] in (0.01, 1.0)


@pytest.mark.parametrize("probe", PROBES)
def test_class_missing_from_train_is_named(probe):
    x = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(ValueError, match=r"\[2\].*no training sample"):
        probe(x, [0, 0, 1, 1, 0, 1], x, [0, 1, 2, 1, 0, 2])
    with pytest.raises(ValueError, match="no training sample"):
        probe(x, [0, 0, 1, 1, 0, 1], x, [0, 1, 1, 1, 0, 0], num_classes=3)


@pytest.mark.parametrize("probe", PROBES)
def test_torch_inputs_and_label_values(probe):
    rng = np.random.default_rng(6)
    x, y = clusters(rng, 6, 2)
    labels = np.where(y == 1, 7, 3)  # arbitrary integer class values
    out = probe(torch.from_numpy(x).float(), torch.from_numpy(labels), x, labels.astype(float))
    assert out["accuracy"] == 1.0


def test_single_class_test_set_gives_nan_auroc():
    rng = np.random.default_rng(8)
    x, y = clusters(rng, 5, 2)
    with pytest.warns(RuntimeWarning, match="only one class"):
        out = knn_probe(x, y, x[y == 1], y[y == 1], k=3)
    assert math.isnan(out["auroc"]) and out["accuracy"] == 1.0


def reference_knn(train_x, train_y, test_x, k, temperature, num_classes):
    probs = []
    for q in test_x:
        qn = q / np.linalg.norm(q)
        sims = [
            (float(np.dot(qn, t / np.linalg.norm(t))), int(c))
            for t, c in zip(train_x, train_y, strict=True)
        ]
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for sim, c in sims[:k]:
            votes[c] += math.exp(sim / temperature)
        total = sum(votes)
        probs.append([v / total for v in votes])
    return np.asarray(probs)


@pytest.mark.parametrize("k,temperature", [(1, 0.07), (4, 0.07), (7, 0.5), (100, 1.0)])
def test_knn_vote_matches_slow_loop(k, temperature):
    rng = np.random.default_rng(k)
    train_x, train_y = rng.normal(size=(30, 5)), rng.integers(0, 3, 30)
    train_y[:3] = [0, 1, 2]
    test_x = rng.normal(size=(12, 5))
    out = knn_probe(
        train_x,
        train_y,
        test_x,
        rng.integers(0, 3, 12),
        k=k,
        temperature=temperature,
        details=True,
        chunk_size=5,
    )
    want = reference_knn(train_x, train_y, test_x, min(k, 30), temperature, 3)
    np.testing.assert_allclose(out["probabilities"], want, rtol=1e-9, atol=1e-12)
    assert out["k"] == min(k, 30)


def test_bad_arguments():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="k must be"):
        knn_probe(x, [0, 1, 0, 1], x, [0, 1, 0, 1], k=0)
    with pytest.raises(ValueError, match="4 labels for 3"):
        linear_probe(x[:3], [0, 1, 0, 1], x, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="features"):
        linear_probe(x, [0, 1, 0, 1], np.zeros((4, 3)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        knn_probe(np.full((4, 2), np.nan), [0, 1, 0, 1], x, [0, 1, 0, 1])
