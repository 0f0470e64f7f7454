"""The UNet encoder: MONAI BasicUNet's five levels give the global vector and its up-path the
dense map, so one network serves global pretraining, local (dense) pretraining and segmentation."""

from __future__ import annotations

from typing import Any, Literal

import torch
from monai.networks.nets import BasicUNet
from pydantic import BaseModel, ConfigDict, Field

from medssl.platform.encoders.base import ConfigLike, Fraction, StrictPositiveInt
from medssl.platform.encoders.monai_common import ActSpec, MonaiEncoder, NormSpec
from medssl.platform.registry import ENCODERS


@ENCODERS.register("unet")
class UNetEncoder(MonaiEncoder):
    """UNet (Ronneberger et al., MICCAI 2015) in MONAI's BasicUNet layout (Falk et al., Nature
    Methods 2019), split into its encoder and decoder halves.

    Encoder: a two-convolution block, then four levels of 2x max-pooling + two convolutions.
    The bottleneck's spatial mean is the global vector: g = mean_s x4[:, :, s], so
    feature_dim = features[4]. Decoder: four up-sample + skip-concatenate + two-convolution
    blocks back to input resolution, dense_dim = features[5]. Every spatial side must be
    divisible by 16. The 1x1 output convolution of BasicUNet is left out: a task adds its own.

    Args:
        spatial_dims: 2 (slices) or 3 (volumes).
        in_channels: input channels.
        config: a `UNetEncoder.Config` or the ``encoder.kwargs`` mapping; or, instead, the
            options below as keywords:
        features: six widths: the five encoder levels, then the last decoder level.
        act: activation, a MONAI name or [name, {args}].
        norm: normalisation, a MONAI name or [name, {args}].
        bias: whether convolutions have a bias.
        dropout: dropout probability inside the convolution blocks.
        upsample: "deconv", "pixelshuffle" or "nontrainable".

    Example:
        >>> enc = UNetEncoder(spatial_dims=2, in_channels=1)
        >>> out = enc(torch.zeros(2, 1, 32, 32), dense=True)
        >>> out.global_features.shape, out.dense.shape
        (torch.Size([2, 256]), torch.Size([2, 32, 32, 32]))
    """

    name = "unet"
    has_decoder = True
    encoder_prefixes = ("net.conv_0.", "net.down_1.", "net.down_2.", "net.down_3.", "net.down_4.")
    #: State-dict prefixes of the four decoder blocks, deepest first (the order `decode` runs).
    decoder_prefixes = ("net.upcat_4.", "net.upcat_3.", "net.upcat_2.", "net.upcat_1.")

    class Config(BaseModel):
        """The ``encoder.kwargs`` of unet."""

        model_config = ConfigDict(extra="forbid")

        features: tuple[StrictPositiveInt, ...] = Field(
            (16, 32, 64, 128, 256, 32), min_length=6, max_length=6
        )
        act: ActSpec = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
        norm: NormSpec = ("instance", {"affine": True})
        bias: bool = True
        dropout: Fraction = 0.0
        upsample: Literal["deconv", "pixelshuffle", "nontrainable"] = "deconv"

    config: Config

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, config, **options)
        cfg = self.config
        widths = cfg.features
        self.net = BasicUNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=1,
            features=widths,
            act=cfg.act,
            norm=cfg.norm,
            bias=cfg.bias,
            dropout=cfg.dropout,
            upsample=cfg.upsample,
        )
        # The output convolution belongs to the task head; keeping it would leave unused
        # parameters (DDP complains) and a meaningless 1-channel map.
        del self.net.final_conv
        self.input_multiple = 16
        self.size_reason = "four 2x max-poolings"
        self.feature_dim = widths[4]
        self.dense_dim = widths[5]
        #: Channels after each decoder block, deepest first; block k ends at 1/2**(4-k) scale.
        self.decoder_widths = (widths[3], widths[2], widths[1], widths[5])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        net = self.net
        levels = [net.conv_0(x)]
        for down in (net.down_1, net.down_2, net.down_3, net.down_4):
            levels.append(down(levels[-1]))
        return levels[-1], levels[:-1]

    def decode(
        self, deepest: torch.Tensor, skips: list[torch.Tensor], blocks: int | None = None
    ) -> torch.Tensor:
        """The decoder map after the first `blocks` up-sampling blocks (default all four).

        With blocks = k < 4 the map has `decoder_widths[k - 1]` channels at 1/2**(4 - k) of the
        input resolution; local contrastive pretraining trains only those blocks.
        """
        net = self.net
        ups = (net.upcat_4, net.upcat_3, net.upcat_2, net.upcat_1)
        if blocks is None:
            blocks = len(ups)
        if not 1 <= blocks <= len(ups):
            raise ValueError(f"blocks must be between 1 and {len(ups)}, got {blocks}")
        x = deepest
        for up, skip in zip(ups[:blocks], list(reversed(skips))[:blocks], strict=True):
            x = up(x, skip)
        return x
