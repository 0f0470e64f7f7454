"""The SegResNet encoder: MONAI SegResNet's residual down-path gives the global vector and its
up-path (without the output convolution) the dense map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import SegResNet

from medssl.platform.encoders.monai_common import (
    LayerSpec,
    MonaiEncoder,
    jsonable,
    layer_spec,
    positive_ints,
)
from medssl.platform.registry import ENCODERS

_UPSAMPLE_MODES = ("deconv", "nontrainable", "pixelshuffle")


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

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        init_filters: int = 8,
        blocks_down: Sequence[int] = (1, 2, 2, 4),
        blocks_up: Sequence[int] = (1, 1, 1),
        dropout_prob: float | None = None,
        act: LayerSpec = ("RELU", {"inplace": True}),
        norm: LayerSpec = ("GROUP", {"num_groups": 8}),
        upsample_mode: str = "nontrainable",
    ) -> None:
        super().__init__(spatial_dims, in_channels)
        down = positive_ints(blocks_down, "blocks_down")
        if len(down) < 2:
            raise ValueError(f"blocks_down needs at least 2 levels, got {blocks_down!r}")
        # One decoder level per down-sampling, or the dense map would miss input resolution.
        up = positive_ints(blocks_up, "blocks_up", length=len(down) - 1)
        (filters,) = positive_ints([init_filters], "init_filters")
        norm_spec = layer_spec(norm, "norm")
        groups = norm_spec[1].get("num_groups", 8) if isinstance(norm_spec, tuple) else 8
        is_group = (norm_spec if isinstance(norm_spec, str) else norm_spec[0]).lower() == "group"
        if is_group and filters % groups:
            raise ValueError(
                f"init_filters must be divisible by the group norm's num_groups={groups}, "
                f"got {init_filters}"
            )
        if dropout_prob is not None and not 0.0 <= dropout_prob < 1.0:
            raise ValueError(f"dropout_prob must be in [0, 1) or None, got {dropout_prob}")
        if upsample_mode not in _UPSAMPLE_MODES:
            raise ValueError(
                f"upsample_mode must be one of {_UPSAMPLE_MODES}, got {upsample_mode!r}"
            )
        self.net = SegResNet(
            spatial_dims=spatial_dims,
            init_filters=filters,
            in_channels=in_channels,
            out_channels=1,
            dropout_prob=dropout_prob,
            act=layer_spec(act, "act"),
            norm=norm_spec,
            use_conv_final=True,
            blocks_down=down,
            blocks_up=up,
            upsample_mode=upsample_mode,
        )
        # Keep the final norm + activation so the dense map is normalised like the one
        # SegResNet's own head sees; drop the 1x1 output convolution (the task's head).
        self.net.conv_final = self.net.conv_final[:2]
        self.input_multiple = 2 ** (len(down) - 1)
        self.size_reason = f"{len(down) - 1} stride-2 levels"
        self.feature_dim = filters * 2 ** (len(down) - 1)
        self.dense_dim = filters
        self.init_kwargs: dict[str, Any] = jsonable(
            {
                "init_filters": filters,
                "blocks_down": down,
                "blocks_up": up,
                "dropout_prob": dropout_prob,
                "act": act,
                "norm": norm,
                "upsample_mode": upsample_mode,
            }
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        deepest, levels = self.net.encode(x)
        return deepest, levels[:-1]

    def decode(self, deepest: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        # SegResNet.decode indexes its list deepest-first and skips entry 0 (the deepest).
        return self.net.decode(deepest, [deepest, *reversed(skips)])
