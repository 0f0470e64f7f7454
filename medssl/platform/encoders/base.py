"""The Encoder contract: a network that gives a global vector and, where it has a decoder,
a dense feature map at input resolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class EncoderOutput:
    """What every encoder returns.

    global_features: (B, feature_dim), pooled from the deepest encoder level.
    dense: (B, dense_dim, *spatial) decoder map at the input's spatial size, or None for
        encoders without a decoder (ResNet). Series encoders (spatial_dims 1) put their
        per-step representation here: (B, dense_dim, T).
    """

    global_features: torch.Tensor
    dense: torch.Tensor | None = None


class Encoder(nn.Module):
    """Base class of encoders. Subclasses set `feature_dim`, `dense_dim` and implement
    `encode` (input -> deepest features and skips) and, when they have one, `decode`.

    `encoder_prefixes` names the state-dict prefixes that belong to the encoder half, so a
    segmenter can be initialised from a pretrained encoder while its decoder starts fresh.
    """

    name: ClassVar[str] = "encoder"
    has_decoder: ClassVar[bool] = False
    encoder_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spatial_dims: int, in_channels: int) -> None:
        super().__init__()
        # 1 is a series (B, C, T); 2 and 3 are images and volumes.
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.feature_dim: int = 0
        self.dense_dim: int | None = None
        self.init_kwargs: dict[str, Any] = {}

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        """Encode `x` (B, C, *spatial). The decoder runs only when `dense` is True."""
        raise NotImplementedError

    def global_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x, dense=False).global_features

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} expects input (B, {self.in_channels}, "
                f"{', '.join('*' * self.spatial_dims)}) got {tuple(x.shape)}"
            )


class SegmentationNet(nn.Module):
    """An encoder-decoder with a 1x1 convolution to `num_classes` logits."""

    def __init__(self, encoder: Encoder, num_classes: int) -> None:
        super().__init__()
        if not encoder.has_decoder or encoder.dense_dim is None:
            raise ValueError(
                f"encoder '{encoder.name}' has no decoder, so it cannot segment; "
                "choose unet, segresnet or swinunetr"
            )
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background included), got {num_classes}")
        self.encoder = encoder
        conv = nn.Conv3d if encoder.spatial_dims == 3 else nn.Conv2d
        self.head = conv(encoder.dense_dim, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.encoder(x, dense=True)
        assert out.dense is not None
        return self.head(out.dense)
