"""Tiny Encoder subclasses and synthetic data shared by the task tests (not a test module)."""

from __future__ import annotations

import torch
from torch import nn

from medssl.platform.encoders.base import Encoder, EncoderOutput


class TinyUNet(Encoder):
    """One down-sampling level and one up-sampling level with a skip; 2D or 3D. Leaky ReLUs:
    with plain ReLUs a net this small can die into an all-background prediction."""

    name = "tiny_unet"
    has_decoder = True
    encoder_prefixes = ("stem.", "down.")

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, width: int = 8) -> None:
        super().__init__(spatial_dims, in_channels)
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        up = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        self.stem = nn.Sequential(conv(in_channels, width, 3, padding=1), nn.LeakyReLU(0.1))
        self.down = nn.Sequential(conv(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.1))
        self.up = up(2 * width, width, 2, stride=2)
        self.fuse = nn.Sequential(conv(2 * width, width, 3, padding=1), nn.LeakyReLU(0.1))
        self.feature_dim = 2 * width
        self.dense_dim = width

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        skip = self.stem(x)
        deep = self.down(skip)
        pooled = deep.flatten(2).mean(dim=2)
        if not dense:
            return EncoderOutput(pooled)
        return EncoderOutput(pooled, self.fuse(torch.cat([self.up(deep), skip], dim=1)))


class PointwiseNet(Encoder):
    """1x1 convolutions only: every output voxel depends on its own input voxel alone, so any
    tiling of the volume gives exactly the same logits."""

    name = "pointwise"
    has_decoder = True
    encoder_prefixes = ("inner.",)

    def __init__(self) -> None:
        super().__init__(spatial_dims=3, in_channels=1)
        self.inner = nn.Conv3d(1, 2, 1)
        self.outer = nn.Conv3d(2, 2, 1)
        with torch.no_grad():  # dense = (0.5 - x, x - 0.5): foreground where x > 0.5
            self.inner.weight.copy_(torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1, 1))
            self.inner.bias.copy_(torch.tensor([0.5, -0.5]))
            self.outer.weight.copy_(torch.eye(2).view(2, 2, 1, 1, 1))
            self.outer.bias.zero_()
        self.feature_dim = 2
        self.dense_dim = 2

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        inner = self.inner(x)
        pooled = inner.flatten(2).mean(dim=2)
        return EncoderOutput(pooled, self.outer(inner) if dense else None)


class PoolingEncoder(Encoder):
    """No decoder: a convolution then global average pooling (for classification)."""

    name = "pooling"

    def __init__(self, spatial_dims: int = 3, width: int = 8) -> None:
        super().__init__(spatial_dims, in_channels=1)
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.body = nn.Sequential(conv(1, width, 3, padding=1), nn.ReLU())
        self.feature_dim = width

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        return EncoderOutput(self.body(x).flatten(2).mean(dim=2))


def cube_volume(
    gen: torch.Generator, side: int = 16, noise: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (1, s, s, s) float, mask (1, s, s, s) int64): a bright box in noise."""
    mask = torch.zeros(1, side, side, side, dtype=torch.long)
    extent = torch.randint(4, side // 2 + 1, (3,), generator=gen)
    start = [int(torch.randint(0, side - int(e) + 1, (1,), generator=gen)) for e in extent]
    box = tuple(slice(s, s + int(e)) for s, e in zip(start, extent, strict=True))
    mask[(slice(None), *box)] = 1
    x = mask.float() + noise * torch.randn(mask.shape, generator=gen)
    return x, mask
