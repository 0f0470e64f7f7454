"""The SegResNet encoder: MONAI SegResNet's residual down-path gives the global vector and its
up-path (without the output convolution) the dense map."""

from __future__ import annotations

from typing import Any, Literal

import torch
from monai.networks.nets import SegResNet
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medssl.platform.encoders.base import (
    ConfigLike,
    Fraction,
    StrictPositiveInt,
    option_problem,
)
from medssl.platform.encoders.monai_common import ActSpec, MonaiEncoder, NormSpec
from medssl.platform.registry import ENCODERS


@ENCODERS.register("segresnet")
class SegResNetEncoder(MonaiEncoder):
    """SegResNet (Myronenko, "3D MRI brain tumor segmentation using autoencoder
    regularization", BrainLes 2018) without the VAE branch.

    Encoder: an initial convolution, then len(blocks_down) levels of residual blocks, each
    level after the first halving the size with a strided convolution and doubling the width.
    Global vector: the spatial mean of the deepest level, feature_dim =
    init_filters * 2**(len(blocks_down) - 1). Decoder: 1x1 convolution + 2x up-sampling +
    additive skip + residual blocks per level, then SegResNet's final norm and activation;
    its 1x1 output convolution is left to the task head. dense_dim = init_filters.
    Spatial sides must be divisible by 2**(len(blocks_down) - 1).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        config: a `SegResNetEncoder.Config` or the ``encoder.kwargs`` mapping; or, instead,
            the options below as keywords:
        init_filters: width of the first level (divisible by the group-norm group count).
        blocks_down: residual blocks per encoder level.
        blocks_up: residual blocks per decoder level; one fewer entry than blocks_down.
        dropout_prob: dropout after the initial convolution, or None.
        act: activation, a MONAI name or [name, {args}].
        norm: normalisation, a MONAI name or [name, {args}].
        upsample_mode: "nontrainable" (linear interpolation), "deconv" or "pixelshuffle".

    Example:
        >>> enc = SegResNetEncoder(spatial_dims=3, in_channels=1)
        >>> out = enc(torch.zeros(2, 1, 32, 32, 32), dense=True)
        >>> out.global_features.shape, out.dense.shape
        (torch.Size([2, 64]), torch.Size([2, 8, 32, 32, 32]))
    """

    name = "segresnet"
    has_decoder = True
    encoder_prefixes = ("net.convInit.", "net.down_layers.")

    class Config(BaseModel):
        """The ``encoder.kwargs`` of segresnet."""

        model_config = ConfigDict(extra="forbid")

        init_filters: StrictPositiveInt = 8
        blocks_down: tuple[StrictPositiveInt, ...] = Field((1, 2, 2, 4), min_length=2)
        blocks_up: tuple[StrictPositiveInt, ...] = (1, 1, 1)
        dropout_prob: Fraction | None = None
        act: ActSpec = ("RELU", {"inplace": True})
        norm: NormSpec = ("GROUP", {"num_groups": 8})
        upsample_mode: Literal["nontrainable", "deconv", "pixelshuffle"] = "nontrainable"

        @model_validator(mode="after")
        def _levels_and_groups_fit(self) -> SegResNetEncoder.Config:
            # One decoder level per down-sampling, or the dense map would miss input resolution.
            if len(self.blocks_up) != len(self.blocks_down) - 1:
                raise option_problem(
                    "blocks_up",
                    f"needs one entry per down-sampling, {len(self.blocks_down) - 1} "
                    f"for blocks_down={list(self.blocks_down)}",
                    list(self.blocks_up),
                )
            spec = self.norm
            groups = spec[1].get("num_groups", 8) if isinstance(spec, tuple) else 8
            is_group = (spec if isinstance(spec, str) else spec[0]).lower() == "group"
            if is_group and self.init_filters % groups:
                raise option_problem(
                    "init_filters",
                    f"must be divisible by the group norm's num_groups={groups}",
                    self.init_filters,
                )
            return self

    config: Config

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, config, **options)
        cfg = self.config
        levels = len(cfg.blocks_down)
        self.net = SegResNet(
            spatial_dims=spatial_dims,
            init_filters=cfg.init_filters,
            in_channels=in_channels,
            out_channels=1,
            dropout_prob=cfg.dropout_prob,
            act=cfg.act,
            norm=cfg.norm,
            use_conv_final=True,
            blocks_down=cfg.blocks_down,
            blocks_up=cfg.blocks_up,
            upsample_mode=cfg.upsample_mode,
        )
        # Keep the final norm + activation so the dense map is normalised like the one
        # SegResNet's own head sees; drop the 1x1 output convolution (the task's head).
        self.net.conv_final = self.net.conv_final[:2]
        self.input_multiple = 2 ** (levels - 1)
        self.size_reason = f"{levels - 1} stride-2 levels"
        self.feature_dim = cfg.init_filters * 2 ** (levels - 1)
        self.dense_dim = cfg.init_filters

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        deepest, levels = self.net.encode(x)
        return deepest, levels[:-1]

    def decode(self, deepest: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        # SegResNet.decode indexes its list deepest-first and skips entry 0 (the deepest).
        return self.net.decode(deepest, [deepest, *reversed(skips)])
