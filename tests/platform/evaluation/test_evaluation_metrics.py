"""Metrics against slow references: set-based Dice, brute-force HD95, pair-counting AUROC."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from medssl.platform.evaluation.metrics import (
    accuracy,
    auroc,
    balanced_accuracy,
    classification_scores,
    dice_per_label,
    hd95_per_label,
    image_diagonal,
    segmentation_scores,
)

# ----------------------------------------------------------------------------- references


def reference_dice(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    p = {idx for idx in np.ndindex(pred.shape) if pred[idx] == label}
    t = {idx for idx in np.ndindex(truth.shape) if truth[idx] == label}
    if not p and not t:
        return math.nan
    return 2.0 * len(p & t) / (len(p) + len(t))


def boundary(mask: np.ndarray) -> list[tuple[int, ...]]:
    """Voxels of the mask with a face-neighbour outside the mask or outside the image."""
    out = []
    for idx in np.ndindex(mask.shape):
        if not mask[idx]:
            continue
        for axis in range(mask.ndim):
            for step in (-1, 1):
                n = list(idx)
                n[axis] += step
                if n[axis] < 0 or n[axis] >= mask.shape[axis] or not mask[tuple(n)]:
                    out.append(idx)
                    break
            else:
                continue
            break
    return out


def reference_hd95(pred: np.ndarray, truth: np.ndarray, label: int, spacing) -> float:
    a, b = boundary(pred == label), boundary(truth == label)
    if not a and not b:
        return math.nan
    if not a or not b:
        return image_diagonal(pred.shape, spacing)
    s = np.asarray(spacing, dtype=np.float64)

    def directed(src, dst):
        dists = []
        for p in src:
            dists.append(
                min(
                    math.sqrt(
                        sum(((pi - qi) * si) ** 2 for pi, qi, si in zip(p, q, s, strict=True))
                    )
                    for q in dst
                )
            )
        return float(np.percentile(np.asarray(dists, dtype=np.float64), 95))

    return max(directed(a, b), directed(b, a))


def reference_auroc_binary(y: np.ndarray, s: np.ndarray) -> float:
    pos = [v for v, t in zip(s, y, strict=True) if t == 1]
    neg = [v for v, t in zip(s, y, strict=True) if t == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def blob_map(rng: np.random.Generator, shape: tuple[int, ...], num_classes: int) -> np.ndarray:
    """A label map of a few random boxes (so that labels form real shapes, not salt noise)."""
    out = np.zeros(shape, dtype=np.int64)
    for label in range(1, num_classes):
        for _ in range(rng.integers(0, 3)):
            lo = [int(rng.integers(0, n - 1)) for n in shape]
            hi = [int(rng.integers(low + 1, n + 1)) for low, n in zip(lo, shape, strict=True)]
            out[tuple(slice(low, high) for low, high in zip(lo, hi, strict=True))] = label
    return out


# ----------------------------------------------------------------------------- Dice


@pytest.mark.parametrize("shape", [(9, 7), (6, 7, 5)])
@pytest.mark.parametrize("num_classes", [2, 4])
def test_dice_matches_set_reference(shape, num_classes):
    rng = np.random.default_rng(len(shape) * 10 + num_classes)
    for _ in range(4):
        pred, truth = blob_map(rng, shape, num_classes), blob_map(rng, shape, num_classes)
        got = dice_per_label(pred, truth, num_classes)
        want = [reference_dice(pred, truth, k) for k in range(1, num_classes)]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, equal_nan=True)
        with_bg = dice_per_label(
            torch.from_numpy(pred), truth, num_classes, include_background=True
        )
        np.testing.assert_allclose(with_bg[0], reference_dice(pred, truth, 0), rtol=1e-6)


def test_dice_absent_labels():
    truth = np.zeros((5, 5), dtype=np.int64)
    truth[1:3, 1:3] = 1
    pred = np.zeros_like(truth)
    pred[3:5, 3:5] = 2
    dice = dice_per_label(pred, truth, 4)
    assert dice[0] == 0.0  # in the truth only
    assert dice[1] == 0.0  # in the prediction only
    assert math.isnan(dice[2])  # in neither


def test_dice_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in shape"):
        dice_per_label(np.zeros((4, 4)), np.zeros((4, 5)), 2)
    with pytest.raises(ValueError, match="outside"):
        dice_per_label(np.full((4, 4), 3), np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match="2D or 3D"):
        dice_per_label(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)), 2)


# ----------------------------------------------------------------------------- HD95


@pytest.mark.parametrize(
    "shape,spacing",
    [((8, 9), (1.0, 1.0)), ((7, 6, 8), (1.0, 2.0, 3.0)), ((6, 8, 7), (0.7, 0.7, 2.5))],
)
def test_hd95_matches_brute_force(shape, spacing):
    rng = np.random.default_rng(sum(shape))
    checked = 0
    for _ in range(5):
        pred, truth = blob_map(rng, shape, 3), blob_map(rng, shape, 3)
        got = hd95_per_label(pred, truth, 3, spacing=spacing)
        want = [reference_hd95(pred, truth, k, spacing) for k in (1, 2)]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
        checked += int(np.isfinite(want).sum())
    assert checked > 3  # the random maps did exercise the distance path


def test_hd95_absent_labels_and_spacing_scale():
    truth = np.zeros((6, 6, 6), dtype=np.int64)
    truth[1:3, 1:4, 2:5] = 1
    pred = np.zeros_like(truth)
    pred[2:4, 1:4, 2:6] = 1
    pred[0, 0, 0] = 2
    spacing = (1.5, 2.0, 0.5)
    hd = hd95_per_label(pred, truth, 4, spacing=spacing)
    assert hd[1] == pytest.approx(image_diagonal((6, 6, 6), spacing))
    assert hd[1] == pytest.approx(math.sqrt((5 * 1.5) ** 2 + (5 * 2.0) ** 2 + (5 * 0.5) ** 2))
    assert math.isnan(hd[2])
    unit = hd95_per_label(pred, truth, 4)[0]
    doubled = hd95_per_label(pred, truth, 4, spacing=2.0)[0]
    assert unit > 0 and doubled == pytest.approx(2 * unit, rel=1e-6)


def test_segmentation_scores_bundle():
    truth = np.zeros((5, 6), dtype=np.int64)
    truth[1:4, 1:4] = 1
    scores = segmentation_scores(truth, truth, 3)
    assert scores["labels"].tolist() == [1, 2]
    assert scores["dice"][0] == pytest.approx(1.0) and scores["hd95"][0] == 0.0
    assert math.isnan(scores["dice"][1]) and math.isnan(scores["hd95"][1])


# ----------------------------------------------------------------------------- AUROC, accuracy


def test_auroc_binary_against_pair_counting():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    s = np.round(rng.normal(size=40) + y, 1)  # rounding creates ties
    assert auroc(y, s) == pytest.approx(reference_auroc_binary(y, s))
    two_col = np.stack([1 - s, s], axis=1)
    assert auroc(y, two_col) == pytest.approx(reference_auroc_binary(y, s))
    assert auroc(torch.from_numpy(y), torch.from_numpy(s)) == pytest.approx(
        reference_auroc_binary(y, s)
    )


def test_auroc_multiclass_one_vs_rest():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 60)
    s = rng.normal(size=(60, 3)) + np.eye(3)[y]
    want = np.mean([reference_auroc_binary((y == k).astype(int), s[:, k]) for k in range(3)])
    assert auroc(y, s) == pytest.approx(want)
    # a class absent from y_true is skipped, not an error
    keep = y != 2
    want2 = np.mean(
        [reference_auroc_binary((y[keep] == k).astype(int), s[keep, k]) for k in (0, 1)]
    )
    assert auroc(y[keep], s[keep]) == pytest.approx(want2)


def test_auroc_single_class_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="only one class"):
        value = auroc(np.ones(5, dtype=int), np.linspace(0, 1, 5))
    assert math.isnan(value)


def test_accuracy_and_balanced_accuracy_against_loops():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 50)
    p = np.where(rng.random(50) < 0.6, y, rng.integers(0, 4, 50))  # may predict an unseen 3
    assert accuracy(y, p) == pytest.approx(sum(a == b for a, b in zip(y, p, strict=True)) / 50)
    recalls = []
    for k in sorted(set(y.tolist())):
        idx = [i for i in range(50) if y[i] == k]
        recalls.append(sum(p[i] == k for i in idx) / len(idx))
    assert balanced_accuracy(y, p) == pytest.approx(sum(recalls) / len(recalls))


def test_classification_scores_uses_argmax():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 1, 1])
    out = classification_scores(y, probs)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["balanced_accuracy"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert out["auroc"] == pytest.approx(reference_auroc_binary(y, probs[:, 1]))


def test_image_diagonal_2d():
    assert image_diagonal((4, 5)) == pytest.approx(5.0)
    assert all(image_diagonal(s, sp) >= 0 for s, sp in itertools.product([(2, 2, 2)], [None, 1.0]))


# ----------------------------------------------------------------------------- real mask


def numpy_boundary(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1]
    interior = inner.copy()
    for axis in range(3):
        for step in (-1, 1):
            interior &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(inner & ~interior).astype(np.float64)


@pytest.mark.integration
def test_real_multi_organ_mask_shifted_one_slice(shared_data):
    nib = pytest.importorskip("nibabel")
    img = nib.load(shared_data / "image3d" / "totalsegmentator" / "example_seg.nii.gz")
    seg = np.asarray(img.dataobj).astype(np.int64)
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    num_classes = int(seg.max()) + 1
    # The same organs one slice apart: an exact translation by spacing[2] mm.
    a = np.pad(seg, ((0, 0), (0, 0), (0, 1)))
    b = np.pad(seg, ((0, 0), (0, 0), (1, 0)))
    dice = dice_per_label(a, b, num_classes)
    present = np.unique(seg)[1:]
    assert present.size > 30  # many organs in this file
    for label in range(1, num_classes):
        if label not in present:
            assert math.isnan(dice[label - 1])
            continue
        pa, pb = a == label, b == label
        want = 2.0 * np.sum(pa & pb) / (pa.sum() + pb.sum())
        assert dice[label - 1] == pytest.approx(want, abs=1e-12)
    hd = hd95_per_label(a, b, num_classes, spacing=spacing)
    finite = hd[present - 1]
    assert np.all(finite >= 0) and np.all(finite <= spacing[2] + 1e-5)
    assert np.any(finite > 0)
    # brute force on the three smallest organs
    sizes = {int(k): int((seg == k).sum()) for k in present}
    s = np.asarray(spacing)
    for label in sorted(sizes, key=sizes.get)[:3]:
        ea, eb = numpy_boundary(a == label) * s, numpy_boundary(b == label) * s
        d = np.sqrt(((ea[:, None, :] - eb[None, :, :]) ** 2).sum(-1))
        want = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
        assert hd[label - 1] == pytest.approx(want, abs=1e-5)
