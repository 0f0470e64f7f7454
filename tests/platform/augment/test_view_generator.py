"""Batched view generation: identity, flips, crop geometry against slicing and a coordinate
ramp, rotation against rot90, intensity steps, keyed reproducibility, dtypes, 2D and 3D."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from medssl.platform.augment import (
    AugmentConfig,
    ViewGenerator,
    affine_from_box,
    sample_keys,
    warp,
)
from medssl.platform.batch import Batch

IDENTITY = AugmentConfig.identity().model_dump()


def _config(**changes: object) -> AugmentConfig:
    return AugmentConfig(**{**IDENTITY, **changes})


def _keys(n: int, view: int = 0, start: int = 0) -> torch.Tensor:
    return sample_keys(torch.arange(start, start + n), seed=7, epoch=0, view=view)


@pytest.mark.parametrize("spatial", [(12, 10), (6, 8, 10)])
def test_shapes_dtypes_and_box_range(spatial: tuple[int, ...]) -> None:
    x = torch.rand(3, 2, *spatial)
    views, box = ViewGenerator()(x, _keys(3))
    assert views.shape == x.shape and views.dtype == torch.float32
    n = len(spatial)
    assert box.shape == (3, 2 * n) and box.dtype == torch.float32
    assert bool(((box >= 0) & (box <= 1)).all())
    assert bool((box[:, n:] > box[:, :n]).all())
    assert torch.isfinite(views).all()


def test_output_size_and_its_check() -> None:
    x = torch.rand(2, 1, 16, 16, 16)
    views, _ = ViewGenerator({"output_size": (8, 6, 4)})(x, _keys(2))
    assert views.shape == (2, 1, 8, 6, 4)
    with pytest.raises(ValueError, match="output_size"):
        ViewGenerator({"output_size": (8, 8)})(x, _keys(2))


@pytest.mark.parametrize("spatial", [(9, 7), (5, 6, 7)])
def test_identity_config_returns_input(spatial: tuple[int, ...]) -> None:
    x = torch.randn(4, 3, *spatial)
    views, box = ViewGenerator(AugmentConfig.identity())(x, _keys(4))
    torch.testing.assert_close(views, x, atol=1e-5, rtol=0)
    n = len(spatial)
    assert torch.equal(box, torch.cat([torch.zeros(4, n), torch.ones(4, n)], dim=1))


@pytest.mark.parametrize("spatial", [(9, 7), (5, 6, 7)])
def test_pure_flip_equals_torch_flip(spatial: tuple[int, ...]) -> None:
    x = torch.randn(2, 1, *spatial)
    views, _ = ViewGenerator(_config(flip_prob=1.0))(x, _keys(2))
    dims = tuple(range(2, x.ndim))
    torch.testing.assert_close(views, torch.flip(x, dims), atol=1e-5, rtol=0)


def test_flip_probability_is_respected() -> None:
    x = torch.zeros(4000, 1, 2, 2)
    geometry = ViewGenerator(_config(flip_prob=0.3)).generate(x, _keys(4000)).geometry
    assert abs(float(geometry.flip.float().mean()) - 0.3) < 0.03


def test_pixel_aligned_box_equals_slicing() -> None:
    x = torch.randn(2, 3, 16, 12)
    box = torch.tensor([[4 / 16, 2 / 12, 12 / 16, 8 / 12], [0.0, 6 / 12, 0.5, 1.0]])
    no_flip = torch.zeros(2, 2, dtype=torch.bool)
    theta = affine_from_box(box, no_flip, torch.eye(2).repeat(2, 1, 1), (16, 12))
    views = warp(x, theta, (8, 6))
    torch.testing.assert_close(views[0], x[0, :, 4:12, 2:8], atol=1e-5, rtol=0)
    torch.testing.assert_close(views[1], x[1, :, 0:8, 6:12], atol=1e-5, rtol=0)


def test_pixel_aligned_box_equals_slicing_3d_with_flip() -> None:
    x = torch.randn(1, 1, 8, 8, 8)
    box = torch.tensor([[0.25, 0.5, 0.0, 0.75, 1.0, 0.5]])
    flip = torch.tensor([[False, True, False]])
    theta = affine_from_box(box, flip, torch.eye(3)[None], (8, 8, 8))
    views = warp(x, theta, (4, 4, 4))
    expected = torch.flip(x[:, :, 2:6, 4:8, 0:4], dims=(3,))
    torch.testing.assert_close(views, expected, atol=1e-5, rtol=0)


def test_quarter_turn_equals_rot90() -> None:
    x = torch.randn(1, 1, 6, 6)
    quarter = torch.tensor([[[0.0, -1.0], [1.0, 0.0]]])
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    views = warp(
        x, affine_from_box(box, torch.zeros(1, 2, dtype=torch.bool), quarter, (6, 6)), (6, 6)
    )
    matches = [torch.allclose(views, torch.rot90(x, k, dims=(2, 3)), atol=1e-5) for k in (1, 3)]
    assert any(matches)


@pytest.mark.parametrize("spatial", [(20, 14), (10, 12, 14)])
def test_crop_box_matches_sampled_region_on_a_ramp(spatial: tuple[int, ...]) -> None:
    """Bilinear sampling of a linear ramp is exact, so the view reveals where it sampled."""
    n = len(spatial)
    config = _config(crop_scale=(0.2, 0.9), aspect_ratio=(0.6, 1.6), scale_range=(0.8, 1.3))
    out_size = tuple(s // 2 for s in spatial)
    config = AugmentConfig(**{**config.model_dump(), "output_size": out_size})
    batch = 6
    for axis in range(n):
        shape = [1] * n
        shape[axis] = spatial[axis]
        ramp = torch.arange(spatial[axis], dtype=torch.float64).reshape(shape)
        x = ramp.expand(*spatial).repeat(batch, 1, *([1] * n)).reshape(batch, 1, *spatial)
        views, box = ViewGenerator(config)(x, _keys(batch))
        for b in range(batch):
            start = float(box[b, axis]) * spatial[axis]
            stop = float(box[b, n + axis]) * spatial[axis]
            step = (stop - start) / out_size[axis]
            centres = start + (torch.arange(out_size[axis], dtype=torch.float64) + 0.5) * step - 0.5
            expected = centres.clamp(0, spatial[axis] - 1)
            line = views[b, 0].movedim(axis, 0).reshape(out_size[axis], -1)
            torch.testing.assert_close(line, expected[:, None].expand_as(line), atol=1e-4, rtol=0)


def test_crop_area_and_zoom_follow_the_config() -> None:
    config = _config(crop_scale=(0.25, 0.25), aspect_ratio=(1.0, 1.0))
    _, box = ViewGenerator(config)(torch.zeros(50, 1, 8, 8), _keys(50))
    sides = box[:, 2:] - box[:, :2]
    torch.testing.assert_close(sides, torch.full_like(sides, 0.5), atol=1e-6, rtol=0)
    zoomed = _config(crop_scale=(0.25, 0.25), aspect_ratio=(1.0, 1.0), scale_range=(2.0, 2.0))
    _, box = ViewGenerator(zoomed)(torch.zeros(50, 1, 8, 8), _keys(50))
    torch.testing.assert_close(
        box[:, 2:] - box[:, :2], torch.full_like(sides, 0.25), atol=1e-6, rtol=0
    )
    jitter = _config(crop_scale=(0.5, 0.5), aspect_ratio=(0.5, 2.0))
    _, box = ViewGenerator(jitter)(torch.zeros(200, 1, 8, 8, 8), _keys(200))
    sides = box[:, 3:] - box[:, :3]
    unclipped = (sides < 1 - 1e-6).all(dim=1)
    volume = sides.prod(dim=1)[unclipped]
    torch.testing.assert_close(volume, torch.full_like(volume, 0.5), atol=1e-5, rtol=0)
    assert float((sides[:, 1] / sides[:, 0]).std()) > 0.1


def test_brightness_contrast_gamma_and_noise() -> None:
    x = torch.rand(16, 2, 8, 8)
    shifted, _ = ViewGenerator(_config(brightness=0.5))(x, _keys(16))
    delta = (shifted - x).flatten(1)
    torch.testing.assert_close(delta, delta[:, :1].expand_as(delta), atol=1e-6, rtol=0)
    assert float(delta[:, 0].abs().max()) <= 0.5 and delta[:, 0].unique().numel() == 16

    scaled, _ = ViewGenerator(_config(contrast=(0.5, 2.0)))(x, _keys(16))
    torch.testing.assert_close(scaled.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    ratio = (scaled - scaled.mean(dim=(2, 3), keepdim=True)) / (
        x - x.mean(dim=(2, 3), keepdim=True)
    )
    assert float(ratio.amin()) > 0.5 - 1e-3 and float(ratio.amax()) < 2.0 + 1e-3

    bent, _ = ViewGenerator(_config(gamma=(2.0, 2.0)))(x, _keys(16))
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    span = x.amax(dim=(1, 2, 3), keepdim=True) - lo
    torch.testing.assert_close(bent, lo + span * ((x - lo) / span) ** 2, atol=1e-5, rtol=0)

    noisy, _ = ViewGenerator(_config(noise_std=0.1))(torch.zeros(8, 1, 32, 32), _keys(8))
    assert abs(float(noisy.std()) - 0.1) < 0.005 and abs(float(noisy.mean())) < 0.005


def test_reproducible_from_keys_and_independent_of_batch_layout() -> None:
    x = torch.rand(6, 1, 10, 12, 8)
    make = ViewGenerator()
    keys = _keys(6)
    a, box_a = make(x, keys)
    b, box_b = make(x, keys)
    assert torch.equal(a, b) and torch.equal(box_a, box_b)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    c, box_c = make(x[perm], keys[perm])
    torch.testing.assert_close(c, a[perm], atol=1e-6, rtol=0)
    assert torch.equal(box_c, box_a[perm])
    first, _ = make(x[:2], keys[:2])
    torch.testing.assert_close(first, a[:2], atol=1e-6, rtol=0)
    other_view, box_other = make(x, _keys(6, view=1))
    assert not torch.allclose(other_view, a)
    assert not torch.allclose(box_other, box_a)


def test_per_sample_parameters_differ() -> None:
    x = torch.rand(1, 1, 12, 12).expand(8, 1, 12, 12)
    views = ViewGenerator(
        _config(crop_scale=(0.3, 1.0), rotate_degrees=30.0, brightness=0.2)
    ).generate(x, _keys(8))
    assert views.crop_box.unique(dim=0).shape[0] == 8
    angles = torch.atan2(views.geometry.rotation[:, 1, 0], views.geometry.rotation[:, 0, 0])
    assert angles.unique().numel() == 8 and float(angles.abs().max()) <= math.radians(30) + 1e-6
    assert views.images.flatten(1).unique(dim=0).shape[0] == 8


def test_rotation_3d_is_orthonormal() -> None:
    geometry = (
        ViewGenerator({"rotate_degrees": 40.0})
        .generate(torch.zeros(5, 1, 4, 4, 4), _keys(5))
        .geometry
    )
    r = geometry.rotation.double()
    torch.testing.assert_close(
        r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        torch.linalg.det(r), torch.ones(5, dtype=torch.float64), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_dtypes(dtype: torch.dtype) -> None:
    x = torch.rand(3, 1, 10, 10, 10)
    reference, _ = ViewGenerator()(x, _keys(3))
    views, _ = ViewGenerator()(x.to(dtype), _keys(3))
    assert views.dtype == dtype
    tolerance = 0.05 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(views.float(), reference, atol=tolerance, rtol=0)


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        AugmentConfig(crop_scale=(0.9, 0.5))
    with pytest.raises(ValidationError):
        AugmentConfig(crop_scale=(0.5, 1.5))
    with pytest.raises(ValidationError):
        AugmentConfig(rotation=10)
    with pytest.raises(ValidationError):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="keys"):
        ViewGenerator()(torch.zeros(2, 1, 4, 4), _keys(3))
    with pytest.raises(ValueError, match="views need"):
        ViewGenerator()(torch.zeros(2, 4, 4), _keys(2))


def test_rotation_is_rigid_in_pixel_space_for_non_square_inputs() -> None:
    """Slow reference: each output pixel's input coordinate from the box, flips and rotation."""
    size, out = (24, 40), (12, 16)
    config = _config(
        crop_scale=(0.3, 0.8),
        aspect_ratio=(0.7, 1.4),
        rotate_degrees=35.0,
        flip_prob=0.5,
        output_size=out,
    )
    views = ViewGenerator(config).generate(torch.zeros(4, 1, *size), _keys(4))
    ramps = [
        torch.arange(size[0], dtype=torch.float64)[:, None].expand(*size),
        torch.arange(size[1], dtype=torch.float64)[None, :].expand(*size),
    ]
    g = views.geometry
    for axis, ramp in enumerate(ramps):
        x = ramp.expand(4, 1, *size)
        images = warp(x, g.theta, out)
        for b in range(4):
            start, stop = g.box[b, :2].double(), g.box[b, 2:].double()
            centre = (start + stop) / 2 * torch.tensor(size) - 0.5
            pixel_step = (stop - start) * torch.tensor(size) / torch.tensor(out)
            sign = torch.where(g.flip[b], -1.0, 1.0).double()
            rows, cols = torch.meshgrid(
                torch.arange(out[0], dtype=torch.float64),
                torch.arange(out[1], dtype=torch.float64),
                indexing="ij",
            )
            offset = torch.stack([rows + 0.5 - out[0] / 2, cols + 0.5 - out[1] / 2], dim=-1)
            coord = centre + (offset * pixel_step * sign) @ g.rotation[b].double().T
            inside = ((coord >= 0) & (coord <= torch.tensor(size) - 1)).all(dim=-1)
            assert int(inside.sum()) > 20
            torch.testing.assert_close(
                images[b, 0][inside], coord[..., axis][inside], atol=1e-3, rtol=0
            )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_views_equal_cpu_views() -> None:
    x = torch.rand(4, 1, 16, 16, 16)
    cpu, cpu_box = ViewGenerator()(x, _keys(4))
    gpu, gpu_box = ViewGenerator()(x.cuda(), _keys(4).cuda())
    assert gpu.device.type == "cuda" and gpu_box.device.type == "cuda"
    torch.testing.assert_close(gpu_box.cpu(), cpu_box, atol=1e-6, rtol=0)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def test_view_batch_records_the_crop_box() -> None:
    batch = Batch(x=torch.rand(3, 1, 8, 8), index=torch.tensor([4, 9, 2]), label=torch.arange(3))
    out = ViewGenerator().view_batch(batch, seed=1, epoch=0, view=1)
    views, box = ViewGenerator()(batch["x"], sample_keys(batch["index"], 1, 0, 1))
    assert torch.equal(out["x"], views) and torch.equal(out["crop_box"], box)
    assert torch.equal(out["label"], batch["label"])
    with pytest.raises(ValueError, match="'index'"):
        ViewGenerator().view_batch(Batch(x=torch.rand(1, 1, 4, 4)), seed=0, epoch=0, view=0)
