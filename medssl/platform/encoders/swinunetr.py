"""The SwinUNETR encoder: the hierarchical Swin transformer gives the global vector, the UNETR
convolutional decoder (before its output convolution) the dense map."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

import torch
from monai.networks.nets import SwinUNETR
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medssl.platform.encoders.base import ConfigLike, StrictPositiveInt, option_problem
from medssl.platform.encoders.monai_common import MonaiEncoder, NormSpec
from medssl.platform.registry import ENCODERS

#: A dropout or stochastic-depth rate.
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
_SWIN_ARGUMENTS = inspect.signature(SwinUNETR.__init__).parameters


def _swin_unetr(**kwargs: Any) -> SwinUNETR:
    """Build SwinUNETR across MONAI versions: older ones still require `img_size` (unused by
    the network since 1.3) and know no `patch_size` (fixed at 2, which the Config checks)."""
    if "img_size" in _SWIN_ARGUMENTS:
        kwargs["img_size"] = (64,) * kwargs["spatial_dims"]
    if "patch_size" not in _SWIN_ARGUMENTS:
        kwargs.pop("patch_size")
    return SwinUNETR(**kwargs)


@ENCODERS.register("swinunetr")
class SwinUNETREncoder(MonaiEncoder):
    """SwinUNETR (Hatamizadeh et al., "Swin UNETR: Swin Transformers for Semantic Segmentation
    of Brain Tumors in MRI Images", BrainLes 2021; Swin: Liu et al., ICCV 2021).

    Encoder: patch embedding, then four Swin stages of shifted-window self-attention, each
    followed by patch merging (size / 2, width x 2). Global vector: the spatial mean of the
    last stage's (layer-normalised) output, feature_dim = 16 * feature_size. Decoder: the
    UNETR residual convolution blocks on the input and on each stage, fused by up-sampling
    blocks back to input resolution; its output convolution is left to the task head.
    dense_dim = feature_size. Spatial sides must be divisible by patch_size**5 (32); with the
    default instance norm, training the decoder also needs one side of at least 64.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        config: a `SwinUNETREncoder.Config` or the ``encoder.kwargs`` mapping; or, instead,
            the options below as keywords:
        feature_size: embedding width, a multiple of 12 (12 is a small CPU-friendly size).
        depths: Swin blocks per stage.
        num_heads: attention heads per stage (must divide the stage width).
        window_size: attention window side.
        patch_size: patch-embedding side.
        norm_name: normalisation of the convolutional decoder ("instance", "batch", ...).
        drop_rate, attn_drop_rate, dropout_path_rate: dropout, attention dropout, stochastic depth.
        normalize: layer-normalise each stage's output before use.
        use_checkpoint: gradient checkpointing in the Swin stages (memory for compute).
        use_v2: SwinUNETR-v2 (a residual convolution block before each stage).
        downsample: "merging" or "mergingv2".

    Example:
        >>> enc = SwinUNETREncoder(spatial_dims=3, in_channels=1, feature_size=12)
        >>> out = enc(torch.zeros(1, 1, 32, 32, 64), dense=True)
        >>> out.global_features.shape, out.dense.shape
        (torch.Size([1, 192]), torch.Size([1, 12, 32, 32, 64]))
    """

    name = "swinunetr"
    has_decoder = True
    encoder_prefixes = ("net.swinViT.",)

    class Config(BaseModel):
        """The ``encoder.kwargs`` of swinunetr."""

        model_config = ConfigDict(extra="forbid")

        feature_size: StrictPositiveInt = Field(24, multiple_of=12)
        depths: tuple[StrictPositiveInt, ...] = Field((2, 2, 2, 2), min_length=4, max_length=4)
        num_heads: tuple[StrictPositiveInt, ...] = Field((3, 6, 12, 24), min_length=4, max_length=4)
        window_size: StrictPositiveInt = 7
        patch_size: StrictPositiveInt = 2
        norm_name: NormSpec = "instance"
        drop_rate: Rate = 0.0
        attn_drop_rate: Rate = 0.0
        dropout_path_rate: Rate = 0.0
        normalize: bool = True
        use_checkpoint: bool = False
        use_v2: bool = False
        downsample: Literal["merging", "mergingv2"] = "merging"

        @model_validator(mode="after")
        def _heads_divide_the_widths(self) -> SwinUNETREncoder.Config:
            for i, heads in enumerate(self.num_heads):
                width = self.feature_size * 2**i
                if width % heads:
                    raise option_problem(
                        "num_heads",
                        f"num_heads[{i}]={heads} must divide the stage width {width} "
                        f"(feature_size={self.feature_size})",
                        list(self.num_heads),
                    )
            if self.patch_size != 2 and "patch_size" not in _SWIN_ARGUMENTS:
                raise option_problem(
                    "patch_size",
                    "this MONAI version's SwinUNETR supports only patch_size=2",
                    self.patch_size,
                )
            return self

    config: Config

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, config, **options)
        cfg = self.config
        self.net = _swin_unetr(
            in_channels=in_channels,
            out_channels=1,
            patch_size=cfg.patch_size,
            depths=cfg.depths,
            num_heads=cfg.num_heads,
            window_size=cfg.window_size,
            feature_size=cfg.feature_size,
            norm_name=cfg.norm_name,
            drop_rate=cfg.drop_rate,
            attn_drop_rate=cfg.attn_drop_rate,
            dropout_path_rate=cfg.dropout_path_rate,
            normalize=cfg.normalize,
            use_checkpoint=cfg.use_checkpoint,
            spatial_dims=spatial_dims,
            downsample=cfg.downsample,
            use_v2=cfg.use_v2,
        )
        # The output convolution is the task's head; unused parameters would trouble DDP.
        del self.net.out
        self.input_multiple = cfg.patch_size**5
        self.norm_name = cfg.norm_name
        self.size_reason = f"patch embedding of {cfg.patch_size} and four patch-merging stages"
        self.feature_dim = 16 * cfg.feature_size
        self.dense_dim = cfg.feature_size

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = self.net.swinViT(x, self.net.normalize)
        # The decoder also reads the raw input (its full-resolution skip).
        return stages[4], [x, *stages[:4]]

    def decode(self, deepest: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        if (
            self.training
            and deepest.shape[2:].numel() == 1
            and "instance" in str(self.norm_name).lower()
        ):
            raise ValueError(
                f"swinunetr's decoder normalises the deepest map per instance, which needs more "
                f"than one voxel: got input {tuple(skips[0].shape)}; make one spatial side at "
                f"least {2 * self.input_multiple} or set norm_name='batch'"
            )
        net = self.net
        x, stage0, stage1, stage2, stage3 = skips
        enc0 = net.encoder1(x)
        enc1 = net.encoder2(stage0)
        enc2 = net.encoder3(stage1)
        enc3 = net.encoder4(stage2)
        dec4 = net.encoder10(deepest)
        dec3 = net.decoder5(dec4, stage3)
        dec2 = net.decoder4(dec3, enc3)
        dec1 = net.decoder3(dec2, enc2)
        dec0 = net.decoder2(dec1, enc1)
        return net.decoder1(dec0, enc0)
