"""Tests of every reduction strategy on synthetic volumes with known duplicates, of the 8-bit
scaling options, of SSIM / mutual information against float64 loops, and of config errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medssl.platform.errors import ConfigError
from medssl.platform.reduction import (
    SSIM,
    DHash,
    Embedding,
    EveryNth,
    MutualInformation,
    build_reducer,
    to_grey,
)
from medssl.platform.reduction.similarity import shrink
from medssl.platform.registry import REDUCERS


def _groups_volume(groups: int = 4, repeats: int = 3, size: int = 48) -> torch.Tensor:
    """`groups` distinct smooth images, each repeated `repeats` times with faint noise."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(groups, 1, 5, 5, generator=g, dtype=torch.float64)
    base = F.interpolate(coarse, size=(size, size), mode="bicubic")[:, 0] * 800.0 - 400.0
    volume = base.repeat_interleave(repeats, dim=0)
    return (volume + 0.05 * torch.randn(volume.shape, generator=g, dtype=torch.float64)).float()


@pytest.mark.parametrize("strategy", ["dhash", "ssim", "mutual_information"])
def test_image_strategies_drop_repeats_and_keep_distinct_slices(strategy: str) -> None:
    volume = _groups_volume()
    assert build_reducer(strategy).select(volume) == [0, 3, 6, 9]


def test_registry_lists_every_strategy() -> None:
    assert REDUCERS.names() == ["dhash", "embedding", "every_nth", "mutual_information", "ssim"]


def test_embedding_drops_cosine_near_duplicates() -> None:
    g = torch.Generator().manual_seed(1)
    prototypes = F.normalize(torch.randn(3, 16, generator=g, dtype=torch.float64), dim=1)
    prototypes[1] = F.normalize(
        prototypes[1] - (prototypes[1] @ prototypes[0]) * prototypes[0], dim=0
    )
    embeddings = (
        prototypes[[0, 0, 1, 0, 2, 1]] * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0, 7.0])[:, None]
    )
    assert Embedding({"threshold": 0.95}).select(embeddings) == [0, 2, 4]
    # Threshold above 1: nothing is near anything, every slice stays.
    assert Embedding({"threshold": 1.0}).select(
        embeddings + 1e-3 * torch.rand(6, 16, generator=g)
    ) == list(range(6))


def test_embedding_refuses_images() -> None:
    with pytest.raises(ValueError, match=r"\(n_slices, D\)"):
        Embedding().select(torch.zeros(3, 4, 4))


@pytest.mark.parametrize(
    ("n", "slices", "kept"), [(1, 4, [0, 1, 2, 3]), (3, 10, [0, 3, 6, 9]), (4, 3, [0]), (2, 0, [])]
)
def test_every_nth_is_exact(n: int, slices: int, kept: list[int]) -> None:
    assert EveryNth({"n": n}).select(torch.zeros(slices, 5, 5)) == kept


def test_empty_volume_keeps_nothing() -> None:
    for name in ("dhash", "ssim", "mutual_information"):
        assert build_reducer(name).select(torch.zeros(0, 16, 16)) == []


# ----------------------------------------------------------------------------- 8-bit scaling


def _grey_loop(
    volume: torch.Tensor, scaling: str, window: tuple[float, float] | None
) -> torch.Tensor:
    x = volume.double()
    out = torch.empty_like(x)
    for k in range(x.shape[0]):
        if scaling == "window":
            lo, hi = window
        elif scaling == "slice":
            lo, hi = float(x[k].min()), float(x[k].max())
        else:
            lo, hi = float(x.min()), float(x.max())
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                v = 0.0 if hi == lo else (float(x[k, i, j]) - lo) * 255.0 / (hi - lo)
                out[k, i, j] = min(255.0, max(0.0, math.floor(v + 0.5)))
    return out


@pytest.mark.parametrize(
    ("scaling", "window"), [("volume", None), ("slice", None), ("window", (-100.0, 300.0))]
)
def test_to_grey_matches_a_float64_loop(scaling: str, window: tuple[float, float] | None) -> None:
    volume = torch.randn(3, 7, 6, generator=torch.Generator().manual_seed(2)) * 400.0
    volume[1] += 500.0  # slices with different ranges, some values outside the window
    ours = to_grey(volume, scaling, window).double()
    expected = _grey_loop(volume, scaling, window)
    # float32 arithmetic may round a value lying within 1e-4 of a half level the other way.
    assert (ours - expected).abs().max() <= 1
    assert (ours != expected).double().mean() < 0.02
    assert ours.min() >= 0 and ours.max() <= 255


def test_constant_volume_becomes_black_not_nan() -> None:
    grey = to_grey(torch.full((2, 4, 4), 7.0))
    assert torch.equal(grey, torch.zeros(2, 4, 4))


def test_slice_scaling_makes_a_dimmed_copy_a_duplicate() -> None:
    volume = _groups_volume(groups=2, repeats=1)
    dimmed = torch.stack([volume[0], volume[0] * 0.2 + 50.0, volume[1]])
    # Per-slice min-max maps the dimmed copy back onto the original: SSIM ~ 1.
    assert SSIM({"scaling": "slice"}).select(dimmed) == [0, 2]
    assert SSIM({"scaling": "volume"}).select(dimmed) == [0, 1, 2]


# ----------------------------------------------------------------------------- similarity references


def _ssim_loop(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """SSIM by its definition: every valid window, Gaussian-weighted moments, float64."""
    taps = [math.exp(-((i - (window - 1) / 2) ** 2) / (2 * sigma**2)) for i in range(window)]
    total = sum(taps)
    w = [[a * b / total**2 for b in taps] for a in taps]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for r in range(x.shape[0] - window + 1):
        for c in range(x.shape[1] - window + 1):
            px = x[r : r + window, c : c + window].double()
            py = y[r : r + window, c : c + window].double()
            wt = torch.tensor(w, dtype=torch.float64)
            mx, my = float((wt * px).sum()), float((wt * py).sum())
            vx = float((wt * px * px).sum()) - mx * mx
            vy = float((wt * py * py).sum()) - my * my
            cov = float((wt * px * py).sum()) - mx * my
            scores.append(
                (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return sum(scores) / len(scores)


def _nmi_loop(x: torch.Tensor, y: torch.Tensor, bins: int) -> float:
    qx = [min(bins - 1, int(v * bins / 256)) for v in x.flatten().tolist()]
    qy = [min(bins - 1, int(v * bins / 256)) for v in y.flatten().tolist()]
    n = len(qx)
    joint: dict[tuple[int, int], int] = {}
    for a, b in zip(qx, qy, strict=True):
        joint[(a, b)] = joint.get((a, b), 0) + 1

    def entropy(counts: list[int]) -> float:
        return -sum(c / n * math.log(c / n) for c in counts if c)

    hx = entropy([qx.count(v) for v in range(bins)])
    hy = entropy([qy.count(v) for v in range(bins)])
    return 2 * (hx + hy - entropy(list(joint.values()))) / (hx + hy)


def test_ssim_threshold_cuts_where_the_loop_says() -> None:
    volume = _groups_volume(groups=3, repeats=1, size=24)
    volume[2] = 0.6 * volume[0] + 0.4 * volume[1]  # partly similar to slice 0
    grey = to_grey(volume)
    s02 = _ssim_loop(grey[0], grey[2])
    s01 = _ssim_loop(grey[0], grey[1])
    assert 0.0 < s02 < 1.0
    assert SSIM({"threshold": s02 - 1e-3}).select(volume) == ([0] if s01 >= s02 - 1e-3 else [0, 1])
    assert SSIM({"threshold": s02 + 1e-3}).select(volume) == (
        [0, 2] if s01 >= s02 + 1e-3 else [0, 1, 2]
    )


def test_mutual_information_threshold_cuts_where_the_loop_says() -> None:
    volume = _groups_volume(groups=3, repeats=1, size=20)
    grey = to_grey(volume)
    nmi = [_nmi_loop(grey[0], grey[j], bins=16) for j in (1, 2)]
    cut = (nmi[0] + nmi[1]) / 2
    expected = [0] + [j for j, v in zip((1, 2), nmi, strict=True) if v < cut]
    assert abs(nmi[0] - nmi[1]) > 1e-3
    assert MutualInformation({"threshold": cut, "bins": 16}).select(volume) == expected
    assert MutualInformation({"threshold": 0.0, "bins": 16}).select(volume) == [0]


def test_shrink_averages_areas_and_never_enlarges() -> None:
    grey = torch.arange(16.0).view(1, 4, 4)
    assert torch.equal(shrink(grey, 8), grey)
    assert torch.allclose(shrink(grey, 2), torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))


# ----------------------------------------------------------------------------- settings


def test_unknown_strategy_names_the_available_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"reduce.strategy: unknown strategy 'phash'; available: dhash"
    ):
        build_reducer("phash")


def test_bad_threshold_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"reduce.threshold: .*6.5.*dhash"):
        build_reducer("dhash", threshold=6.5)
    with pytest.raises(ConfigError, match=r"reduce.threshold"):
        build_reducer("dhash", threshold=65)


def test_unknown_setting_lists_the_allowed_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"reduce.kwargs.size: strategy 'dhash' has no such setting; it takes: hash_size",
    ):
        build_reducer("dhash", params={"size": 3})
    with pytest.raises(ConfigError, match=r"reduce.threshold: strategy 'every_nth' has no such"):
        build_reducer("every_nth", threshold=3)


def test_window_scaling_needs_a_window() -> None:
    with pytest.raises(ConfigError, match=r"needs window"):
        DHash({"scaling": "window"})
    with pytest.raises(ConfigError, match=r"low < high"):
        DHash({"scaling": "window", "window": [300, -100]})


def test_params_carry_every_default() -> None:
    assert DHash().params() == {
        "scaling": "volume",
        "window": None,
        "threshold": 6,
        "hash_size": 8,
        "resample": "lanczos",
    }


def test_wrong_input_shape_is_a_value_error_with_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\(n_slices, H, W\); got shape \(4, 4\)"):
        DHash().select(torch.zeros(4, 4))
