"""Batched, on-device augmentation of ECG/PPG segments (B, C, T) for participant-level contrast.

Each augmentation is switched on per sample by a keyed coin and applied in the fixed order ORDER.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from medssl.platform.augment.config import SignalAugmentConfig
from medssl.platform.augment.keyed import keyed_normal, keyed_uniform

# Limb leads go first so that the noise added later differs between leads, as in a recording;
# channel permutation comes after every lead-aware step; lead masking last keeps masked leads 0.
ORDER: tuple[str, ...] = (
    "limb_leads",
    "baseline_wander",
    "powerline",
    "emg",
    "cutout",
    "magnitude_warp",
    "gaussian_noise",
    "channel_permutation",
    "time_warp",
    "lead_mask",
)

# Einthoven and Goldberger: each derived limb lead as (weight of I, weight of II).
LIMB_LEAD_WEIGHTS: dict[str, tuple[float, float]] = {
    "iii": (-1.0, 1.0),
    "avr": (-0.5, -0.5),
    "avl": (1.0, -0.5),
    "avf": (-0.5, 1.0),
}

_WANDER_COMPONENTS = 3
_EMG_KNOTS = 6
_MIN_WARP_SPEED = 0.1


class _Stream:
    """Stream numbers of the keyed draws (3xx: signals); one per random quantity."""

    COIN = 300
    CUTOUT = 301
    MAGNITUDE_WARP = 302
    NOISE = 303
    PERMUTATION = 304
    TIME_WARP = 305
    POWERLINE = 306
    WANDER = 307
    EMG_NOISE = 308
    EMG_ENVELOPE = 309
    LEAD_MASK = 310


@dataclass(frozen=True)
class _Context:
    keys: torch.Tensor
    config: SignalAugmentConfig
    fs: float
    mix: torch.Tensor | None  # (C, C) limb-lead recomputation matrix


_Pair = tuple[Tensor, Tensor]  # (signals, missing-sample mask)
_Op = Callable[[Tensor, Tensor, _Context], _Pair]


def applied_augmentations(keys: torch.Tensor, config: SignalAugmentConfig) -> torch.Tensor:
    """(B, len(ORDER)) bool: which augmentation each sample gets, column j for ORDER[j]."""
    probability = torch.tensor([getattr(config, name) for name in ORDER], device=keys.device)
    # u lies in [0, 1): probability 1 always applies and probability 0 never does.
    return keyed_uniform(keys, len(ORDER), stream=_Stream.COIN) < probability


def smooth_curve(knots: torch.Tensor, length: int) -> torch.Tensor:
    """(..., K) values at K evenly spaced knots over [0, length - 1] -> (..., length) curve by
    cubic convolution (Keys, a = -0.75): it passes through the knots with a continuous slope."""
    if knots.shape[-1] == 1:
        return knots.expand(*knots.shape[:-1], length)
    flat = knots.reshape(-1, 1, 1, knots.shape[-1])
    curve = F.interpolate(flat, size=(1, length), mode="bicubic", align_corners=True)
    return curve.reshape(*knots.shape[:-1], length)


def resample_rows(x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Read x (B, C, T) at fractional positions (B, T) in [0, T - 1] by linear interpolation."""
    batch, channels, length = x.shape
    if length == 1:
        return x.clone()
    left = position.floor().clamp(0, length - 2).long()
    weight = (position - left.to(position.dtype)).unsqueeze(1)
    index = left.unsqueeze(1).expand(batch, channels, length)
    before = x.gather(2, index)
    return before + weight * (x.gather(2, index + 1) - before)


def limb_lead_matrix(
    leads: Sequence[str], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(C, C) matrix M with out = M @ x recomputing III, aVR, aVL, aVF (those present) from I
    and II; other rows are the identity."""
    names = [str(lead).lower() for lead in leads]
    if "i" not in names or "ii" not in names:
        raise ValueError(f"limb_leads needs leads named I and II, got leads {list(leads)}")
    lead_i, lead_ii = names.index("i"), names.index("ii")
    matrix = torch.eye(len(names), dtype=dtype, device=device)
    for row, name in enumerate(names):
        if name in LIMB_LEAD_WEIGHTS:
            matrix[row] = 0.0
            matrix[row, lead_i], matrix[row, lead_ii] = LIMB_LEAD_WEIGHTS[name]
    return matrix


def _limb_leads(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    assert ctx.mix is not None
    out = torch.einsum("dc,bct->bdt", ctx.mix, x)
    # A derived lead is missing wherever I or II is.
    used = (ctx.mix != 0).to(x.dtype)
    return out, torch.einsum("dc,bct->bdt", used, missing.to(x.dtype)) > 0


def _baseline_wander(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    batch, channels, length = x.shape
    k = _WANDER_COMPONENTS
    u = keyed_uniform(ctx.keys, 2 * k + channels * k, stream=_Stream.WANDER).to(x.dtype)
    frequency = ctx.config.baseline_wander_hz * u[:, :k]
    phase = (2.0 * math.pi) * u[:, k : 2 * k]
    amplitude = ctx.config.baseline_wander_amplitude * u[:, 2 * k :].view(batch, channels, k)
    seconds = torch.arange(length, device=x.device, dtype=x.dtype) / ctx.fs
    waves = torch.cos((2.0 * math.pi) * frequency[:, :, None] * seconds + phase[:, :, None])
    return x + torch.einsum("bck,bkt->bct", amplitude, waves), missing


def _powerline(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    batch, channels, length = x.shape
    usable = [hz for hz in ctx.config.powerline_hz if hz <= ctx.fs / 2]
    u = keyed_uniform(ctx.keys, 2 + channels, stream=_Stream.POWERLINE).to(x.dtype)
    choice = (u[:, 0] * len(usable)).long().clamp(max=len(usable) - 1)
    frequency = torch.tensor(usable, device=x.device, dtype=x.dtype)[choice]
    phase = (2.0 * math.pi) * u[:, 1]
    amplitude = ctx.config.powerline_amplitude * u[:, 2:]
    # Index times frequency modulo fs keeps the cosine's argument small in float32.
    cycles = torch.remainder(
        torch.arange(length, device=x.device, dtype=x.dtype) * frequency[:, None], ctx.fs
    )
    wave = torch.cos((2.0 * math.pi / ctx.fs) * cycles + phase[:, None])
    return x + amplitude[:, :, None] * wave[:, None, :], missing


def _emg(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    batch, channels, length = x.shape
    white = keyed_normal(ctx.keys, channels * (length + 1), stream=_Stream.EMG_NOISE)
    white = white.to(x.dtype).view(batch, channels, length + 1)
    high_passed = (white[:, :, 1:] - white[:, :, :-1]) / math.sqrt(2.0)
    knots = keyed_uniform(ctx.keys, _EMG_KNOTS, stream=_Stream.EMG_ENVELOPE).to(x.dtype)
    envelope = smooth_curve(knots, length).clamp(0.0, 1.0).square()
    return x + ctx.config.emg_std * envelope[:, None, :] * high_passed, missing


def _cutout(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    length = x.shape[-1]
    run = cutout_length(ctx.config, length, ctx.fs)
    u = keyed_uniform(ctx.keys, 1, stream=_Stream.CUTOUT)
    start = (u * (length - run + 1)).long().clamp(max=length - run)
    time = torch.arange(length, device=x.device)
    hole = (time >= start) & (time < start + run)
    return x.masked_fill(hole[:, None, :], 0.0), missing


def cutout_length(config: SignalAugmentConfig, length: int, fs: float) -> int:
    """Samples zeroed by cut-out in a segment of `length` samples at `fs` Hz (1 to length)."""
    if config.cutout_seconds is not None:
        run = round(config.cutout_seconds * fs)
    else:
        run = round(config.cutout_fraction * length)
    return min(max(run, 1), length)


def _magnitude_warp(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    batch, channels, length = x.shape
    k = ctx.config.warp_knots + 2
    knots = keyed_normal(ctx.keys, channels * k, stream=_Stream.MAGNITUDE_WARP).to(x.dtype)
    knots = 1.0 + ctx.config.magnitude_warp_sigma * knots.view(batch, channels, k)
    return x * smooth_curve(knots, length), missing


def _gaussian_noise(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    noise = keyed_normal(ctx.keys, x[0].numel(), stream=_Stream.NOISE).to(x.dtype).view(x.shape)
    return x + ctx.config.gaussian_noise_std * noise, missing


def _channel_permutation(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    batch, channels, length = x.shape
    order = keyed_uniform(ctx.keys, channels, stream=_Stream.PERMUTATION).argsort(dim=1)
    index = order[:, :, None].expand(batch, channels, length)
    return x.gather(1, index), missing.gather(1, index)


def warp_positions(
    keys: torch.Tensor, length: int, sigma: float, knots: int, dtype: torch.dtype
) -> torch.Tensor:
    """(B, length) monotone read positions spanning [0, length - 1]: the running sum of a smooth
    positive speed curve (Um et al., 2017), rescaled so the segment keeps its ends."""
    speed = 1.0 + sigma * keyed_normal(keys, knots + 2, stream=_Stream.TIME_WARP).to(dtype)
    speed = smooth_curve(speed, length).clamp_min(_MIN_WARP_SPEED)
    elapsed = speed.cumsum(dim=1) - speed[:, :1]
    return elapsed / elapsed[:, -1:].clamp_min(1e-12) * (length - 1)


def _time_warp(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    length = x.shape[-1]
    if length == 1:
        return x, missing
    position = warp_positions(
        ctx.keys, length, ctx.config.time_warp_sigma, ctx.config.warp_knots, x.dtype
    )
    # An output sample that reads from a missing input sample is missing.
    return resample_rows(x, position), resample_rows(missing.to(x.dtype), position) > 0


def _lead_mask(x: Tensor, missing: Tensor, ctx: _Context) -> _Pair:
    u = keyed_uniform(ctx.keys, x.shape[1], stream=_Stream.LEAD_MASK)
    drop = u < ctx.config.lead_mask_fraction
    # Sparing the lead with the largest draw changes nothing unless every lead was drawn.
    drop.scatter_(1, u.argmax(dim=1, keepdim=True), False)
    return x.masked_fill(drop[:, :, None], 0.0), missing


_OPS: dict[str, _Op] = {
    "limb_leads": _limb_leads,
    "baseline_wander": _baseline_wander,
    "powerline": _powerline,
    "emg": _emg,
    "cutout": _cutout,
    "magnitude_warp": _magnitude_warp,
    "gaussian_noise": _gaussian_noise,
    "channel_permutation": _channel_permutation,
    "time_warp": _time_warp,
    "lead_mask": _lead_mask,
}


def _check_inputs(
    x: torch.Tensor,
    keys: torch.Tensor,
    config: SignalAugmentConfig,
    fs: float,
    leads: Sequence[str] | None,
) -> None:
    if x.ndim != 3 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (B, C, T), got {x.dtype} {tuple(x.shape)}")
    if keys.ndim != 1 or keys.shape[0] != x.shape[0]:
        raise ValueError(
            f"keys must have shape ({x.shape[0]},) to match x, got {tuple(keys.shape)}"
        )
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive sampling rate in Hz, got {fs}")
    if leads is not None and len(leads) != x.shape[1]:
        raise ValueError(f"leads must name the {x.shape[1]} channels of x, got {list(leads)}")
    if config.limb_leads > 0 and leads is None:
        raise ValueError(
            "limb_leads needs leads naming the channels (with I and II), got leads None"
        )
    if config.powerline > 0 and min(config.powerline_hz) > fs / 2:
        raise ValueError(
            f"powerline_hz {config.powerline_hz} all lie above fs / 2 = {fs / 2} Hz; "
            "list a lower frequency or set powerline to 0"
        )


def augment_signals(
    x: torch.Tensor,
    keys: torch.Tensor,
    config: SignalAugmentConfig,
    *,
    fs: float,
    leads: Sequence[str] | None = None,
) -> torch.Tensor:
    """Augment a batch of segments; sample i's result depends only on x[i] and keys[i].

    Args:
        x: (B, C, T) float signals, per-segment z-scored.
        keys: (B,) int64 keys from `sample_keys` (seed, epoch, index, view).
        config: probabilities and magnitudes.
        fs: sampling rate in Hz.
        leads: channel names (needed by ``limb_leads``: I and II, case-insensitive).

    Returns:
        A new tensor of x's shape, dtype and device. Work is in float32 (float64 stays
        float64). NaN marks missing samples: they are read as 0, and stay NaN in the output,
        moving with channel permutation and time warp (a derived limb lead is NaN where I or II
        is).

    Example:
        >>> from medssl.platform.augment.keyed import sample_keys
        >>> keys = sample_keys(torch.arange(2), seed=0, epoch=0, view=0)
        >>> augment_signals(torch.randn(2, 4, 640), keys, SignalAugmentConfig.preset("ppg"), fs=64.0).shape
        torch.Size([2, 4, 640])
    """
    _check_inputs(x, keys, config, fs, leads)
    keys = keys.to(x.device)
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    missing = torch.isnan(x)
    out = torch.where(missing, 0.0, x.to(work))
    mix = None
    if config.limb_leads > 0:
        assert leads is not None
        mix = limb_lead_matrix(leads, work, x.device)
    ctx = _Context(keys=keys, config=config, fs=float(fs), mix=mix)
    coins = applied_augmentations(keys, config)
    for column, name in enumerate(ORDER):
        if getattr(config, name) == 0:
            continue
        new_out, new_missing = _OPS[name](out, missing, ctx)
        chosen = coins[:, column, None, None]
        out = torch.where(chosen, new_out, out)
        missing = torch.where(chosen, new_missing, missing)
    return out.masked_fill(missing, math.nan).to(x.dtype)
