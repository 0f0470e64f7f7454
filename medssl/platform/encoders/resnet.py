"""The ResNet encoder: MONAI's 2D/3D ResNet (10 to 200 layers) without its classifier, giving
a global vector only (no decoder, so it cannot segment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from monai.networks.nets import resnet as monai_resnet
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medssl.platform.encoders.base import ConfigLike, StrictPositiveInt, option_problem
from medssl.platform.encoders.monai_common import MonaiEncoder
from medssl.platform.registry import ENCODERS

_DEPTHS: dict[int, Callable[..., monai_resnet.ResNet]] = {
    10: monai_resnet.resnet10,
    18: monai_resnet.resnet18,
    34: monai_resnet.resnet34,
    50: monai_resnet.resnet50,
    101: monai_resnet.resnet101,
    152: monai_resnet.resnet152,
    200: monai_resnet.resnet200,
}


@ENCODERS.register("resnet")
class ResNetEncoder(MonaiEncoder):
    """ResNet (He et al., CVPR 2016), in MONAI's 2D/3D form (Hara et al., CVPR 2018; Chen et
    al., "Med3D", 2019).

    A stem (convolution, norm, activation, optional max-pooling) and four residual stages
    (stride 2 from the second on). Global vector: the spatial mean of the last stage,
    feature_dim = int(512 * widen_factor) * expansion (expansion 1 up to 34 layers, 4 from 50).
    No decoder: `forward(x, dense=True)` returns dense=None.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        config: a `ResNetEncoder.Config` or the ``encoder.kwargs`` mapping; or, instead, the
            options below as keywords:
        depth: 10, 18, 34, 50, 101, 152 or 200.
        widen_factor: multiplies every stage width (0.25 makes a small CPU-friendly net).
        conv1_t_size: kernel side of the stem convolution.
        conv1_t_stride: stride of the stem convolution.
        no_max_pool: skip the stem's max-pooling (keeps resolution for small inputs).
        shortcut_type: "A" (pad with zeros) or "B" (1x1 convolution) residual shortcut.
        bias_downsample: bias in the "B" shortcut convolution.

    Example:
        >>> enc = ResNetEncoder(spatial_dims=3, in_channels=1, depth=10, widen_factor=0.25)
        >>> enc(torch.zeros(2, 1, 32, 32, 32)).global_features.shape
        torch.Size([2, 128])
    """

    name = "resnet"
    has_decoder = False
    encoder_prefixes = ("net.",)

    class Config(BaseModel):
        """The ``encoder.kwargs`` of resnet."""

        model_config = ConfigDict(extra="forbid")

        depth: StrictPositiveInt = 18
        widen_factor: float = Field(1.0, gt=0.0)
        conv1_t_size: StrictPositiveInt = 7
        conv1_t_stride: StrictPositiveInt = 1
        no_max_pool: bool = False
        shortcut_type: Literal["A", "B"] = "B"
        bias_downsample: bool = True

        @field_validator("depth")
        @classmethod
        def _known_depth(cls, depth: int) -> int:
            if depth not in _DEPTHS:
                raise ValueError(f"must be one of {sorted(_DEPTHS)}")
            return depth

        @model_validator(mode="after")
        def _keeps_a_channel(self) -> ResNetEncoder.Config:
            if int(64 * self.widen_factor) < 1:
                raise option_problem(
                    "widen_factor",
                    "must leave the 64-channel stem at least 1 channel (>= 1/64)",
                    self.widen_factor,
                )
            return self

    config: Config

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, config, **options)
        cfg = self.config
        self.net = _DEPTHS[cfg.depth](
            pretrained=False,
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=cfg.conv1_t_size,
            conv1_t_stride=cfg.conv1_t_stride,
            no_max_pool=cfg.no_max_pool,
            shortcut_type=cfg.shortcut_type,
            widen_factor=cfg.widen_factor,
            feed_forward=False,
            bias_downsample=cfg.bias_downsample,
        )
        # After construction `in_planes` is the last stage's output width.
        self.feature_dim = int(self.net.in_planes)
        self.dense_dim = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # ResNet.forward with feed_forward=False flattens after pooling; stopping before the
        # pool keeps the last stage's map available to callers of `encode`.
        net = self.net
        x = net.act(net.bn1(net.conv1(x)))
        if not net.no_max_pool:
            x = net.maxpool(x)
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = stage(x)
        return x, []
