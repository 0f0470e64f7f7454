"""Batched spatial views: random resized crop, flips, rotation and zoom as ONE sampling grid.

One `affine_grid` + `grid_sample` per view for the whole batch, 2D or 3D, on the input's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medssl.platform.augment.config import AugmentConfig
from medssl.platform.augment.keyed import keyed_range, keyed_uniform


class Stream:
    """Stream numbers of the keyed draws; one per random quantity so they stay independent."""

    CROP_AREA = 101
    CROP_ASPECT = 102
    CROP_POSITION = 103
    ZOOM = 104
    FLIP = 105
    ROTATION = 106
    GAMMA = 201
    CONTRAST = 202
    BRIGHTNESS = 203
    NOISE = 204


@dataclass
class ViewGeometry:
    """Where a view came from, per sample, in the input's spatial axis order.

    box: (B, 2 * n) normalised [start..., stop...] in [0, 1] of the axis-aligned region the
        view samples (crop with zoom applied). Rotation turns the view about the box centre.
    flip: (B, n) bool, True where the view mirrors that axis.
    rotation: (B, n, n) rotation in input pixel space (identity when rotate_degrees is 0).
    theta: (B, n, n + 1) the `affine_grid` matrix (x, y[, z] order, i.e. reversed axes).
    """

    box: torch.Tensor
    flip: torch.Tensor
    rotation: torch.Tensor
    theta: torch.Tensor


def _plane_rotation(angle: torch.Tensor, n: int, i: int, j: int) -> torch.Tensor:
    """(B, n, n) rotations by `angle` (B,) in the plane of axes i and j."""
    rot = torch.eye(n, dtype=angle.dtype, device=angle.device).repeat(angle.shape[0], 1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot[:, i, i], rot[:, j, j] = cos, cos
    rot[:, i, j], rot[:, j, i] = -sin, sin
    return rot


def _rotations(keys: torch.Tensor, n: int, degrees: float) -> torch.Tensor:
    planes = [(0, 1)] if n == 2 else [(1, 2), (0, 2), (0, 1)]
    limit = math.radians(degrees)
    angles = keyed_range(keys, len(planes), -limit, limit, stream=Stream.ROTATION)
    rot = torch.eye(n, device=keys.device).repeat(keys.shape[0], 1, 1)
    for k, (i, j) in enumerate(planes):
        rot = rot @ _plane_rotation(angles[:, k], n, i, j)
    return rot


def _crop_sides(keys: torch.Tensor, n: int, config: AugmentConfig) -> torch.Tensor:
    """(B, n) side fractions of the random resized crop, zoom applied, clipped to 1."""
    area = keyed_range(keys, 1, *config.crop_scale, stream=Stream.CROP_AREA)
    low, high = (math.log(a) for a in config.aspect_ratio)
    # Side k / side 0 is log-uniform in aspect_ratio (torchvision's rule in 2D); centring the
    # logs keeps the product of the sides equal to the drawn area.
    log_ratio = keyed_range(keys, n - 1, low, high, stream=Stream.CROP_ASPECT)
    log_sides = torch.cat([torch.zeros_like(log_ratio[:, :1]), log_ratio], dim=1)
    log_sides = log_sides - log_sides.mean(dim=1, keepdim=True)
    sides = area.pow(1.0 / n) * torch.exp(log_sides)
    zoom = keyed_range(keys, 1, *config.scale_range, stream=Stream.ZOOM)
    return (sides / zoom).clamp(max=1.0)


def sample_geometry(
    keys: torch.Tensor, input_size: tuple[int, ...], config: AugmentConfig
) -> ViewGeometry:
    """Draw each sample's crop, zoom, flips and rotation from its key.

    Args:
        keys: (B,) int64 keys of this view (see `sample_keys`).
        input_size: the input's spatial size, 2 or 3 entries.
        config: the augmentation settings.
    """
    n = len(input_size)
    if n not in (2, 3):
        raise ValueError(f"views need 2 or 3 spatial dimensions, got input size {input_size}")
    sides = _crop_sides(keys, n, config)
    start = keyed_uniform(keys, n, stream=Stream.CROP_POSITION) * (1.0 - sides)
    flip = keyed_uniform(keys, n, stream=Stream.FLIP) < config.flip_prob
    rotation = _rotations(keys, n, config.rotate_degrees)

    box = torch.cat([start, (start + sides).clamp(max=1.0)], dim=1)
    theta = affine_from_box(box, flip, rotation, input_size)
    return ViewGeometry(box=box, flip=flip, rotation=rotation, theta=theta)


def affine_from_box(
    box: torch.Tensor,
    flip: torch.Tensor,
    rotation: torch.Tensor,
    input_size: tuple[int, ...],
) -> torch.Tensor:
    """The (B, n, n + 1) `affine_grid` matrix that maps a view onto its box of the input.

    The view spans the box (normalised [start..., stop...], axis order of the input), mirrored
    where `flip` is True and turned by `rotation` (in input pixel space) about the box centre.
    """
    n = len(input_size)
    start, sides = box[:, :n], box[:, n:] - box[:, :n]
    size = torch.tensor(input_size, dtype=box.dtype, device=box.device)
    signs = 1.0 - 2.0 * flip.to(box.dtype)
    # Output grid g in [-1, 1] -> crop-pixel offset g * sides * size / 2 -> rotated in pixel
    # space -> input grid offset; rotating in pixels keeps it rigid for non-square inputs.
    linear = (rotation.to(box.dtype) / size[None, :, None]) * (sides * size * signs)[:, None, :]
    centre = 2.0 * start + sides - 1.0
    # affine_grid orders coordinates x, y[, z]: the reverse of the tensor's spatial axes.
    return torch.cat([linear.flip(1).flip(2), centre.flip(1)[:, :, None]], dim=2)


def cell_centres(theta: torch.Tensor, grid_size: tuple[int, ...]) -> torch.Tensor:
    """Where the cell centres of a feature map over each view lie in the original input.

    A view of shape (*spatial) encoded to a map of `grid_size` cells tiles the view evenly, so
    cell centres sit at the pixel centres of a `grid_size` image of the view; the view's
    `affine_grid` matrix carries them (crop, zoom, flips and rotation) into the input.

    Args:
        theta: (B, n, n + 1) the views' `affine_grid` matrices (`ViewGeometry.theta`).
        grid_size: the feature map's spatial size, n entries.

    Returns:
        (B, prod(grid_size), n) coordinates in [0, 1] of the input (axis order of the input,
        0 the first pixel's outer edge, 1 the last pixel's); cells in row-major order, as
        ``feature_map.flatten(2)`` orders them.

    Example:
        >>> box = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
        >>> theta = affine_from_box(box, torch.zeros(1, 2, dtype=torch.bool),
        ...                         torch.eye(2)[None], (8, 8))
        >>> cell_centres(theta, (2, 2))[0]
        tensor([[0.1250, 0.1250],
                [0.1250, 0.3750],
                [0.3750, 0.1250],
                [0.3750, 0.3750]])
    """
    n = theta.shape[1]
    if theta.ndim != 3 or theta.shape[2] != n + 1 or len(grid_size) != n:
        raise ValueError(
            f"cell_centres needs theta (B, n, n + 1) and n grid sides; got theta "
            f"{tuple(theta.shape)} and grid {tuple(grid_size)}"
        )
    work = torch.float64 if theta.dtype == torch.float64 else torch.float32
    shape = [theta.shape[0], 1, *grid_size]
    grid = F.affine_grid(theta.to(work), shape, align_corners=False)  # (B, *grid, n) x,y[,z]
    return (grid.flip(-1).reshape(theta.shape[0], -1, n) + 1.0) / 2.0


def warp(
    x: torch.Tensor,
    theta: torch.Tensor,
    output_size: tuple[int, ...],
    padding_mode: str = "border",
) -> torch.Tensor:
    """Resample the batch `x` (B, C, *spatial) through one affine grid per sample.

    Sampling runs in float32 (float64 stays float64); the result has x's dtype.
    """
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    grid = F.affine_grid(
        theta.to(work), [x.shape[0], x.shape[1], *output_size], align_corners=False
    )
    out = F.grid_sample(
        x.to(work), grid, mode="bilinear", padding_mode=padding_mode, align_corners=False
    )
    return out.to(x.dtype)
