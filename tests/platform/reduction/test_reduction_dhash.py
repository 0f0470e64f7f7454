"""Tests of the batched dHash: resizing as Pillow does, bits as `imagehash.dhash` gives them on
real CT and MedMNIST slices, Hamming distances, and the greedy pass against the paper's loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medssl.platform.reduction import (
    DHash,
    greedy_keep,
    greedy_keep_reference,
    greedy_keep_rows,
    hamming_matrix,
    resize_weights,
    slice_dhash,
    to_grey,
)
from medssl.platform.reduction.base import grey_affine, grey_levels, grey_map
from medssl.platform.reduction.dhash import (
    _ResizePlan,
    columns_first,
    dhash_reference,
    resize_grey,
)

Image = pytest.importorskip("PIL.Image")


def _imagehash_bits(grey: np.ndarray) -> np.ndarray:
    """(n, 64) bool from `imagehash.dhash` on each 8-bit slice given as a PIL image."""
    imagehash = pytest.importorskip("imagehash")
    return np.stack([imagehash.dhash(Image.fromarray(s)).hash.ravel() for s in grey])


def _smooth_volume(n: int, size: int, seed: int) -> torch.Tensor:
    """Slices of low-frequency random images (hash bits that survive small noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=g, dtype=torch.float64)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic")[:, 0]


# ----------------------------------------------------------------------------- resizing


@pytest.mark.parametrize(("in_size", "out_size"), [(512, 9), (101, 8), (9, 9), (5, 12), (64, 9)])
@pytest.mark.parametrize("resample", ["lanczos", "box"])
def test_resize_weights_sum_to_one_within_fixed_point(
    in_size: int, out_size: int, resample: str
) -> None:
    w = resize_weights(in_size, out_size, resample)
    assert w.shape == (out_size, in_size)
    assert torch.allclose(
        w.sum(dim=1), torch.ones(out_size, dtype=torch.float64), atol=in_size * 2.0**-22
    )
    assert torch.equal(w, torch.round(w * 2.0**22) / 2.0**22)  # Pillow's 22 fraction bits


def test_resize_to_the_same_size_is_the_identity() -> None:
    assert torch.equal(resize_weights(9, 9, "lanczos"), torch.eye(9, dtype=torch.float64))


def _pillow_resize(img: np.ndarray, size: tuple[int, int], resample: str) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize(size, getattr(Image, resample.upper())))


def _resize_with(plan: _ResizePlan, grey: np.ndarray) -> np.ndarray:
    sums = plan.new_sums(1)
    plan.first_pass(torch.from_numpy(grey)[None].float(), sums, plan.scratch(1))
    return plan.second_pass(sums, 1)[0].numpy()


@pytest.mark.parametrize("resample", ["lanczos", "box"])
def test_resize_equals_pillow_on_random_images(resample: str) -> None:
    """Value for value: the sums are exact, so no tie is rounded differently from Pillow."""
    rng = np.random.default_rng(0)
    for trial in range(80):
        h, w = (int(v) for v in rng.integers(2, 300, size=2))
        out_w, out_h = (int(v) for v in rng.integers(1, 24, size=2))  # grows or shrinks
        img = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
        if trial % 4 == 0:  # only the extremes: the largest sums of either sign
            img = (img // 128 * 255).astype(np.uint8)
        ours = resize_grey(torch.from_numpy(img)[None], (out_w, out_h), resample)[0].numpy()
        np.testing.assert_array_equal(ours, _pillow_resize(img, (out_w, out_h), resample))


@pytest.mark.parametrize(("height", "width"), [(512, 512), (101, 122), (64, 1024), (700, 60)])
@pytest.mark.parametrize("int8", [True, False])
def test_both_first_pass_products_equal_pillow(height: int, width: int, int8: bool) -> None:
    """int8 digit products (a CPU) and float64 products (a GPU, run here on the CPU)."""
    rng = np.random.default_rng(height + width)
    plan = _ResizePlan(height, width, (9, 8), "lanczos", torch.device("cpu"), int8=int8)
    assert (plan.digits is not None) == int8
    for _ in range(3):
        img = rng.integers(0, 256, size=(height, width)).astype(np.uint8)
        np.testing.assert_array_equal(
            _resize_with(plan, img), _pillow_resize(img, (9, 8), "lanczos")
        )


def test_lines_too_wide_for_int32_sums_use_float64() -> None:
    img = np.random.default_rng(1).integers(0, 256, size=(3, 70_000)).astype(np.uint8)
    plan = _ResizePlan(3, 70_000, (9, 8), "lanczos", torch.device("cpu"), int8=True)
    assert plan.digits is None
    np.testing.assert_array_equal(_resize_with(plan, img), _pillow_resize(img, (9, 8), "lanczos"))


def test_grey_levels_keep_the_exact_ties_of_an_integer_ct_range() -> None:
    """-1024..914 HU: 255 / 1938 = 5 / 38, so every 19 HU a value lies exactly half-way
    between two levels and must round up, as integer arithmetic (and numpy) does."""
    hu = torch.arange(-1024, 915, dtype=torch.float32).view(1, 1, -1)
    exact = ((hu.long() + 1024) * 510 + 1938) // (2 * 1938)
    assert torch.equal(to_grey(hu).long(), exact)
    assert torch.equal(grey_levels(hu, *grey_map(*grey_affine(hu, "volume"))).long(), exact)


def test_pass_order_follows_the_shape() -> None:
    assert columns_first(512, 512, 8, 9)
    assert not columns_first(300, 40, 8, 9)  # a tall slice: rows first
    assert columns_first(5, 5, 8, 9)


# ----------------------------------------------------------------------------- imagehash


@pytest.mark.integration
@pytest.mark.parametrize("name", ["example_ct_sm.nii.gz", "example_ct.nii.gz"])
def test_bits_agree_with_imagehash_on_real_ct_slices(shared_data, name: str) -> None:
    nib = pytest.importorskip("nibabel")
    path = shared_data / "image3d" / "totalsegmentator" / name
    volume = torch.from_numpy(np.asarray(nib.load(path).dataobj, dtype=np.float32))
    stacks = [volume.permute(2, 1, 0), volume.permute(0, 1, 2), volume.permute(1, 0, 2)]
    ours, theirs = [], []
    for stack in stacks:  # axial, sagittal and coronal slices: wide, tall and square shapes
        grey = to_grey(stack).to(torch.uint8)
        ours.append(slice_dhash(grey).numpy())
        theirs.append(_imagehash_bits(grey.numpy()))
    np.testing.assert_array_equal(np.concatenate(ours), np.concatenate(theirs))


@pytest.mark.integration
def test_bits_agree_with_imagehash_on_adrenal_mnist_volumes(shared_data) -> None:
    path = shared_data / "image3d" / "medmnist" / "adrenalmnist3d_64_trainsplit.npz"
    with np.load(path) as arrays:
        volumes = arrays["train_images"][:12]
    assert volumes.dtype == np.uint8 and volumes.shape[1:] == (64, 64, 64)
    ours = np.concatenate([slice_dhash(torch.from_numpy(v)).numpy() for v in volumes])
    theirs = np.concatenate([_imagehash_bits(v) for v in volumes])
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.integration
def test_volume_path_hashes_the_same_8bit_slices(shared_data) -> None:
    """DHash scales each chunk to 8 bits on the fly; that equals hashing to_grey's slices."""
    nib = pytest.importorskip("nibabel")
    path = shared_data / "image3d" / "totalsegmentator" / "example_ct.nii.gz"
    volume = torch.from_numpy(np.asarray(nib.load(path).dataobj, dtype=np.float32)).permute(2, 1, 0)
    reducer = DHash()
    grey = to_grey(volume).to(torch.uint8)
    assert torch.equal(reducer.hashes(volume), slice_dhash(grey))
    kept = reducer.select(volume)
    assert kept == reducer.select_reference(volume)
    assert 0 < len(kept) < volume.shape[0]


# ----------------------------------------------------------------------------- distances and greedy


def test_hamming_matrix_equals_popcount_loop() -> None:
    bits = torch.rand(40, 64, generator=torch.Generator().manual_seed(1)) < 0.5
    distances = hamming_matrix(bits)
    for i in range(40):
        for j in range(40):
            assert distances[i, j] == int((bits[i] ^ bits[j]).sum())


@pytest.mark.parametrize("threshold", [0, 3, 6, 10, 20, 32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_greedy_equals_the_papers_loop(threshold: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    # Clustered hashes (a few prototypes with flipped bits) so that every threshold matters.
    prototypes = torch.rand(5, 64, generator=g) < 0.5
    flips = torch.rand(80, 64, generator=g) < torch.rand(80, 1, generator=g) * 0.2
    bits = prototypes[torch.randint(0, 5, (80,), generator=g)] ^ flips
    as_ints = [int("".join("1" if b else "0" for b in row.tolist()), 2) for row in bits]
    expected = greedy_keep_reference(
        len(as_ints), lambda i, j: bin(as_ints[i] ^ as_ints[j]).count("1") <= threshold
    )
    near = hamming_matrix(bits) <= threshold
    assert greedy_keep(near) == expected
    assert greedy_keep_rows(len(as_ints), lambda i, rest: near[i, rest]) == expected


def test_reference_hash_matches_the_batched_bits() -> None:
    grey = to_grey(_smooth_volume(6, 70, seed=3))
    bits = slice_dhash(grey)
    for s, row in zip(grey, bits, strict=True):
        value = int("".join("1" if b else "0" for b in row.tolist()), 2)
        assert dhash_reference(s) == value


def test_repeated_slices_are_dropped_and_distinct_ones_kept() -> None:
    base = _smooth_volume(4, 64, seed=0) * 1000.0
    volume = base.repeat_interleave(3, dim=0)  # 0 0 0 1 1 1 2 2 2 3 3 3
    volume = volume + 0.01 * torch.randn(volume.shape, generator=torch.Generator().manual_seed(0))
    reducer = DHash({"threshold": 6})
    assert reducer.select(volume) == [0, 3, 6, 9]
    assert reducer.select_reference(volume) == [0, 3, 6, 9]


def test_threshold_zero_keeps_every_distinct_hash() -> None:
    volume = _smooth_volume(10, 48, seed=5)
    bits = DHash().hashes(volume)
    distinct = len({tuple(row.tolist()) for row in bits})
    assert len(DHash({"threshold": 0}).select(volume)) == distinct


def test_selection_is_deterministic_and_per_volume() -> None:
    a, b = _smooth_volume(12, 40, seed=7), _smooth_volume(9, 40, seed=8)
    reducer = DHash({"threshold": 10})
    first = reducer.select(a)
    assert reducer.select(a) == first
    # Reducing b first (or at all) does not change a's result: nothing is shared.
    reducer.select(b)
    assert DHash({"threshold": 10}).select(a.clone()) == first


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_hashes_equal_cpu_hashes() -> None:
    volume = _smooth_volume(30, 200, seed=4).float() * 3000 - 1000
    reducer = DHash()
    assert torch.equal(reducer.hashes(volume.cuda()).cpu(), reducer.hashes(volume))
    assert reducer.select(volume.cuda()) == reducer.select(volume)
