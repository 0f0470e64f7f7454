"""AutoTCL's learned augmenter: the hard-concrete keep mask, the small network that gives a keep
probability and a scale per step and channel, and the channels it may transform."""

from __future__ import annotations

import torch
from torch import nn

from medssl.platform.encoders.ts2vec import TS2VecEncoder
from medssl.platform.errors import ConfigError


def hard_concrete(
    logits: torch.Tensor,
    *,
    sample: bool = True,
    temperature: float = 1.0,
    gamma: float = -0.05,
    zeta: float = 1.0,
    noise_bound: float = 1e-3,
    hard: bool = False,
) -> torch.Tensor:
    """Hard-concrete (stretched binary concrete) gate of Louizos et al. (ICLR 2018), with the
    noise on the logit of the keep probability p = sigmoid(logits):

        u ~ U(noise_bound, 1 - noise_bound)
        s = sigmoid((log u - log(1 - u) + logits) / temperature)     (sample=False: s = p)
        m = clip(s * (zeta - gamma) + gamma, 0, 1)

    With `hard`, the forward value is 1[m > 0.5] and the gradient is that of m
    (straight-through). Defaults are AutoTCL's (gamma -0.05, zeta 1; Louizos: -0.1, 1.1).
    Computed in float32 (float64 for float64 logits).

    Example:
        >>> hard_concrete(torch.zeros(3), sample=False)
        tensor([0.4750, 0.4750, 0.4750])
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not gamma < 0 < 1 <= zeta:
        raise ValueError(f"need gamma < 0 and zeta >= 1 (the stretch), got {gamma}, {zeta}")
    if not 0 <= noise_bound < 0.5:
        raise ValueError(f"noise_bound must be in [0, 0.5), got {noise_bound}")
    # Uniform noise near 0 and 1 needs float32 at least (bf16 would round 1 - 1e-3 to 1).
    logits = logits if logits.dtype == torch.float64 else logits.float()
    if sample:
        u = torch.rand_like(logits) * (1 - 2 * noise_bound) + noise_bound
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / temperature)
    else:
        s = torch.sigmoid(logits)
    m = (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)
    if hard:
        # (m - m.detach()) is exactly 0 in value, so the forward value is exactly 0 or 1.
        m = (m > 0.5).to(m.dtype) + (m - m.detach())
    return m


class ParametricAugmenter(nn.Module):
    """AutoTCL's augmenter: a small dilated-conv encoder (TS2Vec blocks, no timestamp
    masking) gives an embedding per step; two Linear heads give, per (channel, step), the keep
    probability p = sigmoid(.) and the positive scale g = sigmoid(.). The view is
    v = g * m * x with m a hard-concrete sample of p; NaN in x stays NaN in v. With `shared`
    the heads give one p and g per step, applied to every channel (the authors' forecasting
    code, `agu_channel=1`): the mask then drops whole steps and cannot select channels.
    The augmenter sees all `in_channels`; `out_channels` (default: all) is how many of them
    it gives a p and g for.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_dim: int,
        embed_dim: int,
        depth: int,
        shared: bool = False,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.body = TS2VecEncoder(
            1,
            in_channels,
            hidden_dim=hidden_dim,
            output_dim=embed_dim,
            depth=depth,
            mask_probability=0.0,
            dropout=0.0,
        )
        heads = 1 if shared else (in_channels if out_channels is None else out_channels)
        self.keep_head = nn.Linear(embed_dim, heads)
        self.scale_head = nn.Linear(embed_dim, heads)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep logits and scales g for `x` (B, C, T): both (B, out_channels, T), or
        (B, 1, T) when the augmenter is `shared` (one gate and scale per step for every
        channel, which broadcast against them)."""
        embedding = self.body.sequence(x).transpose(1, 2)
        keep_logits = self.keep_head(embedding).transpose(1, 2)
        scale = torch.sigmoid(self.scale_head(embedding)).transpose(1, 2)
        return keep_logits, scale


def free_channels(in_channels: int, fixed: tuple[int, ...]) -> list[int]:
    """The channels an augmenter may transform: all but `fixed` (each in range, at least one
    left). Raises ConfigError naming `pretrain.method.fixed_channels` otherwise."""
    bad = sorted({c for c in fixed if not 0 <= c < in_channels})
    if bad:
        raise ConfigError(
            f"pretrain.method.fixed_channels {bad} are not channels of this {in_channels}-channel "
            f"input; give indices from 0 to {in_channels - 1}"
        )
    free = [c for c in range(in_channels) if c not in set(fixed)]
    if not free:
        raise ConfigError(
            "pretrain.method.fixed_channels names every input channel, so the view would be "
            "the input; leave at least one channel to the augmenter"
        )
    return free
