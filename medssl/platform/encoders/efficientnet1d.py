"""A 1-D EfficientNet-style CNN for wearable ECG/PPG segments: MBConv stages that shorten the
series, a 1x1 head to the embedding size, and global average pooling."""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medssl.platform.encoders.base import (
    ConfigLike,
    Encoder,
    EncoderOutput,
    Fraction,
    StrictPositiveInt,
)
from medssl.platform.registry import ENCODERS

#: A positive, finite width or depth multiplier.
Multiplier = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]

#: Stages as (expansion, kernel, stride, channels, repeats): EfficientNet-B0's layout with
#: longer kernels (a 1-D kernel covers one axis where a 2-D one covers two) and the sixth stage
#: narrowed from 192 to 184, which gives about 3.37M parameters at in_channels=1 and
#: feature_dim=256 (the paper's ~3.3M).
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 5, 2, 24, 2),
    (6, 7, 2, 40, 2),
    (6, 5, 2, 80, 3),
    (6, 7, 1, 112, 3),
    (6, 7, 2, 184, 4),
    (6, 5, 1, 320, 1),
)
STEM_CHANNELS = 32
#: Inputs shorter than this leave too few steps for the stem and the four strided stages.
MIN_LENGTH = 16


def _round_width(channels: int, width: float) -> int:
    """Scale a channel count and round it to a multiple of 8, as EfficientNet does, never
    losing more than 10% to the rounding."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


class _SqueezeExcitation(nn.Module):
    """Channel gates from the time-averaged map (Hu et al., CVPR 2018): s = sigmoid(W2 SiLU(W1
    mean_t h)), output h * s."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv1d(channels, squeezed, 1)
        self.expand = nn.Conv1d(squeezed, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        gate = self.expand(F.silu(self.reduce(h.mean(dim=-1, keepdim=True))))
        return h * torch.sigmoid(gate)


def _conv_bn(in_dim: int, out_dim: int, kernel: int, stride: int = 1, groups: int = 1) -> list:
    return [
        nn.Conv1d(in_dim, out_dim, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm1d(out_dim),
    ]


class _MBConv(nn.Module):
    """Inverted residual (Sandler et al., 2018; Tan & Le, 2019): 1x1 expansion, depthwise
    conv (the stride lives here), squeeze-excitation, 1x1 projection without activation; the
    identity is added, with stochastic depth, when the shape is kept."""

    def __init__(
        self, in_dim: int, out_dim: int, expansion: int, kernel: int, stride: int, drop: float
    ) -> None:
        super().__init__()
        hidden = in_dim * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [*_conv_bn(in_dim, hidden, 1), nn.SiLU()]
        layers += [*_conv_bn(hidden, hidden, kernel, stride, groups=hidden), nn.SiLU()]
        # The squeeze width follows the block input (EfficientNet's ratio 0.25), not `hidden`.
        layers += [_SqueezeExcitation(hidden, max(1, in_dim // 4)), *_conv_bn(hidden, out_dim, 1)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_dim == out_dim
        self.drop = drop

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.body(h)
        if not self.residual:
            return out
        if self.training and self.drop > 0:
            # Stochastic depth (Huang et al., 2016): drop the whole branch per sample, rescaled
            # so its expectation is unchanged.
            keep = torch.rand(out.shape[0], 1, 1, device=out.device) >= self.drop
            out = out * keep.to(out.dtype) / (1.0 - self.drop)
        return h + out


@ENCODERS.register("efficientnet1d")
class EfficientNet1DEncoder(Encoder):
    """1-D EfficientNet-style CNN, the encoder of Abbaspourazad et al. (ICLR 2024, "Large-scale
    Training of Foundation Models for Wearable Biosignals"): ~3.3M parameters, 256-d embedding.

    Stem conv (kernel 3, stride 2, BN, SiLU) -> seven stages of MBConv blocks (`STAGES`: 1x1
    expansion, depthwise conv, squeeze-excitation, 1x1 projection; SiLU and batch norm;
    residual with stochastic depth where the shape is kept); with the stem's stride the series
    is shortened 32-fold ->
    1x1 head conv to `feature_dim` (BN, SiLU). `global_features` is the head map's mean over
    time, (B, feature_dim), with dropout in training. `forward(x, dense=True).dense` is the head
    map linearly interpolated back to the input length, (B, feature_dim, T), for methods that
    need one vector per step.

    Any T >= 16 works (odd ones too). The input must be finite: NaN raises ValueError, as the
    biosignal adapter masks or drops windows with missing samples before they reach here.

    Args:
        spatial_dims: must be 1 (series x of shape (B, C, T)).
        in_channels: C, the number of leads or PPG channels.
        config: an `EfficientNet1DEncoder.Config` or the ``encoder.kwargs`` mapping; or,
            instead, the options below as keywords:
        feature_dim: embedding size (256).
        width: channel multiplier of the stem and stages, rounded to multiples of 8 (1.0).
        depth: multiplier of each stage's block count, rounded up (1.0).
        dropout: dropout on the pooled embedding in training (0.0).
        stochastic_depth: drop rate of the last residual block, rising linearly from 0 over
            the blocks (0.0 disables).

    Example:
        >>> enc = EfficientNet1DEncoder(spatial_dims=1, in_channels=1, width=0.25, depth=0.5)
        >>> enc.eval()(torch.randn(2, 1, 300), dense=True).dense.shape
        torch.Size([2, 256, 300])
    """

    name = "efficientnet1d"
    has_decoder = False
    encoder_prefixes = ("stem.", "blocks.", "head.")
    spatial_dims_allowed = (1,)

    class Config(BaseModel):
        """The ``encoder.kwargs`` of efficientnet1d."""

        model_config = ConfigDict(extra="forbid")

        feature_dim: StrictPositiveInt = 256
        width: Multiplier = 1.0
        depth: Multiplier = 1.0
        dropout: Fraction = 0.0
        stochastic_depth: Fraction = 0.0

    config: Config

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, config, **options)
        cfg = self.config
        stem = _round_width(STEM_CHANNELS, cfg.width)
        self.stem = nn.Sequential(*_conv_bn(in_channels, stem, 3, stride=2), nn.SiLU())
        self.blocks = self._stages(stem, cfg.width, cfg.depth, cfg.stochastic_depth)
        last = self.blocks[-1].body[-1].num_features
        self.head = nn.Sequential(*_conv_bn(last, cfg.feature_dim, 1), nn.SiLU())
        self.dropout = nn.Dropout(cfg.dropout)
        self.feature_dim = cfg.feature_dim
        self.dense_dim = cfg.feature_dim

    @staticmethod
    def _stages(in_dim: int, width: float, depth: float, drop: float) -> nn.Sequential:
        plan = [
            (expansion, kernel, stride if i == 0 else 1, _round_width(channels, width))
            for expansion, kernel, stride, channels, repeats in STAGES
            for i in range(math.ceil(repeats * depth))
        ]
        blocks = []
        for index, (expansion, kernel, stride, out_dim) in enumerate(plan):
            rate = drop * index / max(1, len(plan) - 1)
            blocks.append(_MBConv(in_dim, out_dim, expansion, kernel, stride, rate))
            in_dim = out_dim
        return nn.Sequential(*blocks)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The head map (B, feature_dim, T') of `x` (B, C, T); T' is about T / 32."""
        self.check_input(x)
        if x.shape[-1] < MIN_LENGTH:
            raise ValueError(
                f"efficientnet1d needs series of at least {MIN_LENGTH} steps, got {x.shape[-1]}"
            )
        if torch.isnan(x).any():
            raise ValueError(
                "efficientnet1d input contains NaN; the biosignal adapter masks/drops NaN "
                "windows, so check the data path that bypassed it"
            )
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        h = self.feature_map(x)
        pooled = self.dropout(h.mean(dim=-1))
        if not dense:
            return EncoderOutput(pooled)
        per_step = F.interpolate(h, size=x.shape[-1], mode="linear", align_corners=False)
        return EncoderOutput(pooled, per_step)
