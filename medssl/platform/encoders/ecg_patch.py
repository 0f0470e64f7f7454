"""A patch transformer for multi-lead ECG: the signal is cut into fixed-length patches over all
leads, embedded by one strided convolution, and encoded by a small pre-LN transformer."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from medssl.platform.encoders.base import (
    ConfigLike,
    Encoder,
    EncoderOutput,
    Fraction,
    StrictPositiveInt,
)
from medssl.platform.encoders.text import MLPRatio, heads_problem, pre_ln_transformer
from medssl.platform.registry import ENCODERS


@ENCODERS.register("ecg_patch")
class ECGPatchEncoder(Encoder):
    """ECG patch transformer, the ECG encoder of MoRE (Thapa et al., 2024, "MoRE: Multi-Modal
    Contrastive Pre-training with Transformers on X-Rays, ECGs, and Diagnostic Report"), a ViT
    (Dosovitskiy et al., ICLR 2021) over time.

    x (B, leads, T) -> Conv1d(leads, width, kernel = stride = patch_size): one token per
    patch_size samples across all leads (50 samples = 0.5 s at 100 Hz) -> + learned position
    embedding -> `depth` pre-LN transformer layers (GELU) -> LayerNorm -> tokens (B, N, width).
    `global_features` is the mean over the N patches, (B, width). `forward(x, dense=True).dense`
    gives each sample its patch's token, (B, width, T), for methods that need one vector per
    step; the model has no decoder.

    T need not be a multiple of patch_size: the last T mod patch_size samples (under one patch)
    are dropped, as a strided convolution does, rather than padded with invented samples; in
    `dense` they take the last patch's token. N = T // patch_size must lie in [1, max_patches].

    Size at the defaults with 12 leads: 878,464 parameters (76,928 patch embedding, 8,192
    positions, 198,272 per layer, 256 final norm).

    Args:
        spatial_dims: must be 1 (series x of shape (B, leads, T)).
        in_channels: the number of leads.
        config: an `ECGPatchEncoder.Config` or the ``encoder.kwargs`` mapping; or, instead, the
            options below as keywords:
        patch_size: samples per patch, the convolution's kernel and stride (50).
        max_patches: number of learned positions, the most patches a series may have (64).
        width: token width and `feature_dim` (128).
        depth: number of transformer layers (4).
        heads: attention heads; must divide width (4).
        mlp_ratio: feed-forward width / width (4.0).
        dropout: dropout on the embeddings, attention and feed-forward layers (0.1).

    Example:
        >>> enc = ECGPatchEncoder(spatial_dims=1, in_channels=12, width=32, depth=1, heads=2)
        >>> out = enc.eval()(torch.randn(2, 12, 1000), dense=True)
        >>> out.global_features.shape, out.dense.shape
        (torch.Size([2, 32]), torch.Size([2, 32, 1000]))
    """

    name = "ecg_patch"
    has_decoder = False
    encoder_prefixes = ("patch_embed.", "position", "blocks.", "norm.")
    spatial_dims_allowed = (1,)

    class Config(BaseModel):
        """The ``encoder.kwargs`` of ecg_patch."""

        model_config = ConfigDict(extra="forbid")

        patch_size: StrictPositiveInt = 50
        max_patches: StrictPositiveInt = 64
        width: StrictPositiveInt = 128
        depth: StrictPositiveInt = 4
        heads: StrictPositiveInt = 4
        mlp_ratio: MLPRatio = 4.0
        dropout: Fraction = 0.1

        @model_validator(mode="after")
        def _heads_divide_the_width(self) -> ECGPatchEncoder.Config:
            problem = heads_problem(self.width, self.heads)
            if problem is not None:
                raise problem
            return self

    config: Config

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, config, **options)
        cfg = self.config
        self.patch_embed = nn.Conv1d(in_channels, cfg.width, cfg.patch_size, cfg.patch_size)
        self.position = nn.Parameter(torch.zeros(1, cfg.max_patches, cfg.width))
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = pre_ln_transformer(
            cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.dropout
        )
        self.norm = nn.LayerNorm(cfg.width)
        nn.init.trunc_normal_(self.position, std=0.02)  # ViT's initialisation
        self.feature_dim = cfg.width
        self.dense_dim = cfg.width

    def patches(self, x: torch.Tensor) -> int:
        """N, the number of patches of `x` (B, leads, T), after checking that it fits."""
        self.check_input(x)
        cfg = self.config
        length = x.shape[-1]
        count = length // cfg.patch_size
        if not 1 <= count <= cfg.max_patches:
            raise ValueError(
                f"ecg_patch cuts T={length} samples into T // patch_size={cfg.patch_size} = "
                f"{count} patches, but takes 1 to max_patches={cfg.max_patches}; crop or "
                "resample the series, or raise max_patches or patch_size"
            )
        if torch.isnan(x).any():
            raise ValueError(
                "ecg_patch input contains NaN; mask or drop windows with missing samples "
                "before they reach the encoder"
            )
        return count

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised patch tokens (B, N, width) of `x` (B, leads, T)."""
        count = self.patches(x)
        # The strided convolution ignores the samples after the last whole patch.
        h = self.patch_embed(x).transpose(1, 2)
        h = self.dropout(h + self.position[:, :count])
        return self.norm(self.blocks(h))

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        h = self.tokens(x)
        pooled = h.mean(dim=1)
        if not dense:
            return EncoderOutput(pooled)
        per_patch = h.transpose(1, 2).repeat_interleave(self.config.patch_size, dim=-1)
        remainder = x.shape[-1] - per_patch.shape[-1]
        per_step = F.pad(per_patch, (0, remainder), mode="replicate") if remainder else per_patch
        return EncoderOutput(pooled, per_step)
