"""The TS2Vec dilated-convolution series encoder, the NaN conventions every series encoder
shares (padding, missing steps, pooling over the series), and causal sliding encoding."""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from medssl.platform.encoders.base import (
    ConfigLike,
    Encoder,
    EncoderOutput,
    Fraction,
    StrictPositiveInt,
)
from medssl.platform.registry import ENCODERS


def series_steps(x: torch.Tensor) -> torch.Tensor:
    """(B, T) bool, True on the steps that belong to each series of `x` (B, C, T).

    A series ends at its last step with any observed (non-NaN) channel; the all-NaN steps
    after it are padding. NaN steps inside a series are missing values, not padding.
    """
    observed = ~torch.isnan(x).all(dim=1)
    position = torch.arange(1, x.shape[-1] + 1, device=x.device)
    length = (observed * position).amax(dim=1)
    return position[None, :] <= length[:, None]


def masked_max_pool(sequence: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Max over the steps where `steps` (B, T) is True of `sequence` (B, D, T) -> (B, D);
    a row without any such step gives zeros."""
    if steps.shape != (sequence.shape[0], sequence.shape[-1]):
        raise ValueError(
            f"steps must be (B, T) = {(sequence.shape[0], sequence.shape[-1])}, "
            f"got {tuple(steps.shape)}"
        )
    pooled = sequence.masked_fill(~steps[:, None, :], float("-inf")).amax(dim=-1)
    return torch.where(steps.any(dim=1)[:, None], pooled, torch.zeros_like(pooled))


def masked_mean_pool(sequence: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Mean over the steps where `steps` (B, T) is True of `sequence` (B, D, T) -> (B, D)."""
    weight = steps[:, None, :].to(sequence.dtype)
    return (sequence * weight).sum(dim=-1) / weight.sum(dim=-1).clamp_min(1.0)


class _DilatedBlock(nn.Module):
    """GELU -> dilated conv -> GELU -> dilated conv, plus a (projected) residual. `inside`
    (B, 1, T) zeroes padding after every convolution, so a padded series sees exactly the zero
    padding its unpadded self gets from the convolutions."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, dilation: int, project: bool):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(in_dim, out_dim, kernel_size, padding=padding, dilation=dilation)
        self.conv2 = nn.Conv1d(out_dim, out_dim, kernel_size, padding=padding, dilation=dilation)
        self.projector = nn.Conv1d(in_dim, out_dim, 1) if project else None

    def forward(self, h: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        residual = h if self.projector is None else self.projector(h)
        # GELU(0) = 0, so the zeroed padding stays zero on the way into each convolution.
        h = self.conv1(F.gelu(h)) * inside
        h = self.conv2(F.gelu(h))
        return (h + residual) * inside


def causal_convolution(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """y[:, :, t] = sum_j weight[:, :, j] . x[:, :, t - (K - 1) + j] with zeros before the start:
    a causal convolution of `x` (B, C, T) with `weight` (O, C, K), giving (B, O, T).

    Up to 16 taps the direct convolution is used. Longer kernels go through the FFT by overlap-
    save: the series is cut into blocks of n - K + 1 outputs, each read with its K - 1 steps of
    past, with n the smallest power of two >= 2K - 1; the kernel's spectrum then has only
    n / 2 + 1 bins (for K = 128 on 320 channels: 13 M complex values, not the 210 M a
    whole-series FFT would need), and each bin is one (blocks x C) @ (C x O) product
    (benchmarks/trend_head.py times it against the direct forms). Computed in float32.
    """
    taps = weight.shape[-1]
    batch, _, length = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, weight = x.float(), weight.float()
        if taps <= 16:
            return F.conv1d(F.pad(x, (taps - 1, 0)), weight)
        n = 1 << (2 * taps - 2).bit_length()
        step = n - taps + 1
        blocks = -(-length // step)
        # (B, C, blocks, n): block j holds x[j * step - (K - 1) .. j * step + step - 1]
        pieces = F.pad(x, (taps - 1, blocks * step - length)).unfold(-1, n, step)
        spectrum = torch.fft.rfft(pieces, n=n)
        bins = spectrum.shape[-1]
        # A correlation with the kernel: the product with its conjugate spectrum. Outputs
        # 0 .. n - K of each block are free of wrap-around, exactly `step` of them.
        kernel = torch.fft.rfft(weight, n=n).conj()
        product = torch.bmm(
            spectrum.permute(3, 0, 2, 1).reshape(bins, batch * blocks, -1),
            kernel.permute(2, 1, 0),
        )
        product = product.reshape(bins, batch, blocks, -1).permute(1, 3, 2, 0)
        out = torch.fft.irfft(product, n=n)[..., :step]
        return out.reshape(batch, -1, blocks * step)[..., :length]


class _TrendHead(nn.Module):
    """CoST's trend head (Woo et al., ICLR 2022), which AutoTCL's forecasting encoder puts on
    top of the TS2Vec blocks: the mean of causal convolutions with the given kernel sizes.

    The mean of causal convolutions is itself one causal convolution, with the kernels
    right-aligned and averaged; it is computed that way (`causal_convolution`), so the kernels
    1..128 cost one overlap-save FFT convolution instead of 255 taps of direct convolution.
    The parameters (one Conv1d per kernel size), and so the gradients, are those of the
    separate convolutions.
    """

    def __init__(self, dim: int, kernels: tuple[int, ...]):
        super().__init__()
        self.kernels = kernels
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, k) for k in kernels)

    def combined(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The one causal kernel (O, C, max kernel) and bias (O, 1) equal to the mean."""
        taps = max(self.kernels)
        weight = torch.stack(
            [F.pad(conv.weight, (taps - conv.kernel_size[0], 0)) for conv in self.convs]
        ).mean(dim=0)
        bias = torch.stack([conv.bias for conv in self.convs]).mean(dim=0)
        return weight, bias[:, None]

    def forward(self, h: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        weight, bias = self.combined()
        return (causal_convolution(h, weight) + bias).to(h.dtype) * inside


@ENCODERS.register("ts2vec")
class TS2VecEncoder(Encoder):
    """The TS2Vec encoder (Yue et al., AAAI 2022, "TS2Vec: Towards Universal Representation
    of Time Series").

    Per step: Linear(C -> hidden_dim); during training each latent timestamp is zeroed with
    probability `mask_probability` (timestamp masking); then `depth` residual blocks of two
    dilated Conv1d (kernel 3, dilation 2^i, GELU) at hidden_dim and one more block (dilation
    2^depth, 1x1-projected residual) to output_dim, as in the authors' code; dropout on the
    result. Output: (B, output_dim, T), one representation per step.

    NaN handling: a step with any NaN channel is zeroed in the latent (as TS2Vec does), so
    missing steps get a representation from their context. Trailing all-NaN steps are
    padding: zeroed after every convolution too, so in eval mode a NaN-padded series gives the
    same representation on its own steps as the unpadded one.

    `forward(x, dense=True).dense` is the sequence (B, output_dim, T) (zero on padding);
    `global_features` is its max over the series' own steps (TS2Vec's instance
    representation), (B, output_dim).

    Args:
        spatial_dims: must be 1 (series x of shape (B, C, T)).
        in_channels: C, the number of variables.
        config: a `TS2VecEncoder.Config` or the ``encoder.kwargs`` mapping; or, instead, the
            options below as keywords:
        hidden_dim: width of the input projection and the hidden blocks (64).
        output_dim: representation size per step (320).
        depth: number of hidden dilated blocks (10).
        kernel_size: odd convolution kernel (3).
        mask_probability: chance a latent timestamp is zeroed in training (0.5; 0 disables).
        dropout: dropout on the output representation in training (0.1).
        trend_kernels: kernel sizes of an optional causal trend head on the output (CoST's,
            used by AutoTCL's forecasting encoder: [1, 2, 4, ..., 128]); the representation is
            then the mean of causal convolutions of these sizes over the blocks' output, without
            dropout. None (the default): plain TS2Vec.

    Example:
        >>> enc = TS2VecEncoder(spatial_dims=1, in_channels=2, output_dim=16, depth=2)
        >>> enc.eval()(torch.randn(3, 2, 50), dense=True).dense.shape
        torch.Size([3, 16, 50])
    """

    name = "ts2vec"
    has_decoder = False
    encoder_prefixes = ("input_fc.", "blocks.", "trend.")
    spatial_dims_allowed = (1,)

    class Config(BaseModel):
        """The ``encoder.kwargs`` of ts2vec."""

        model_config = ConfigDict(extra="forbid")

        hidden_dim: StrictPositiveInt = 64
        output_dim: StrictPositiveInt = 320
        depth: Annotated[int, Field(strict=True, ge=0)] = 10
        kernel_size: StrictPositiveInt = 3
        mask_probability: Fraction = 0.5
        dropout: Fraction = 0.1
        trend_kernels: list[StrictPositiveInt] | None = Field(None, min_length=1)

        @field_validator("kernel_size")
        @classmethod
        def _odd(cls, kernel_size: int) -> int:
            if kernel_size % 2 == 0:
                raise ValueError("must be odd, so the padding keeps the length")
            return kernel_size

    config: Config

    def __init__(
        self, spatial_dims: int, in_channels: int, config: ConfigLike = None, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, config, **options)
        cfg = self.config
        self.input_fc = nn.Linear(in_channels, cfg.hidden_dim)
        # The last block changes the width, so (as in the authors' code) it always projects.
        self.blocks = nn.ModuleList(
            _DilatedBlock(
                cfg.hidden_dim,
                cfg.output_dim if i == cfg.depth else cfg.hidden_dim,
                cfg.kernel_size,
                dilation=2**i,
                project=i == cfg.depth,
            )
            for i in range(cfg.depth + 1)
        )
        self.dropout = nn.Dropout(cfg.dropout)
        kernels = cfg.trend_kernels
        self.trend = None if kernels is None else _TrendHead(cfg.output_dim, tuple(kernels))
        self.mask_probability = cfg.mask_probability
        self.feature_dim = cfg.output_dim
        self.dense_dim = cfg.output_dim

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step representation (B, output_dim, T) of `x` (B, C, T); zero on padding."""
        self.check_input(x)
        missing = torch.isnan(x)
        kept = ~missing.any(dim=1)
        inside = series_steps(x)
        h = self.input_fc(torch.where(missing, torch.zeros_like(x), x).transpose(1, 2))
        if self.training and self.mask_probability > 0:
            kept = kept & (torch.rand(kept.shape, device=x.device) >= self.mask_probability)
        h = h.transpose(1, 2) * kept[:, None, :].to(h.dtype)
        inside_f = inside[:, None, :].to(h.dtype)
        for block in self.blocks:
            h = block(h, inside_f)
        if self.trend is not None:
            return self.trend(h, inside_f)
        return self.dropout(h)

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        sequence = self.sequence(x)
        pooled = masked_max_pool(sequence, series_steps(x))
        return EncoderOutput(pooled, sequence if dense else None)


@torch.no_grad()
def causal_sliding_representations(
    encoder: Encoder, series: torch.Tensor, window: int = 200, batch_size: int = 256
) -> torch.Tensor:
    """Representation of every step t of `series` (B, C, T) from x[t - window .. t] alone.

    TS2Vec's forecasting protocol: each step is encoded in its own window of the `window`
    past steps plus itself, left-padded with NaN near the start, and the window's last step
    is kept, so nothing after t reaches step t. Windows are encoded `batch_size` at a time,
    in eval mode (the encoder's mode is restored afterwards).

    Returns:
        (B, T, D) with D the encoder's dense_dim.

    Example:
        >>> enc = TS2VecEncoder(spatial_dims=1, in_channels=1, output_dim=8, depth=1)
        >>> causal_sliding_representations(enc, torch.randn(2, 1, 30), window=5).shape
        torch.Size([2, 30, 8])
    """
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be a non-negative integer, got {window!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if series.ndim != 3:
        raise ValueError(f"series must be (B, C, T), got shape {tuple(series.shape)}")
    n, _, length = series.shape
    padded = F.pad(series, (window, 0), value=float("nan"))
    # A (B, T, C, window + 1) view, copied one chunk at a time: [b, t] is x[b, :, t-window..t].
    windows = padded.unfold(2, window + 1, 1).permute(0, 2, 1, 3)
    flat = torch.arange(n * length, device=series.device)
    was_training = encoder.training
    encoder.eval()
    try:
        parts = []
        for chunk in flat.split(batch_size):
            out = encoder(windows[chunk // length, chunk % length], dense=True).dense
            if out is None or out.shape[-1] != window + 1:
                raise ValueError(
                    f"encoder '{encoder.name}' must return a per-step dense map of the input "
                    f"length {window + 1}; got {None if out is None else tuple(out.shape)}"
                )
            parts.append(out[..., -1])
    finally:
        encoder.train(was_training)
    return torch.cat(parts).reshape(n, length, -1)
