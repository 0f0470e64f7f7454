"""Batched intensity augmentation: gamma, contrast, brightness and Gaussian noise.

Each sample draws its own parameters from its key; they broadcast over channels and space.
"""

from __future__ import annotations

import math

import torch

from medssl.platform.augment.config import AugmentConfig
from medssl.platform.augment.keyed import keyed_normal, keyed_range
from medssl.platform.augment.spatial import Stream


def _per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B, 1) parameters -> (B, 1, 1, ...) so they broadcast over (B, C, *spatial)."""
    return values.reshape(values.shape[0], *([1] * (ndim - 1)))


def adjust_gamma(x: torch.Tensor, gamma: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """x -> lo + (hi - lo) * ((x - lo) / (hi - lo)) ** gamma on each sample's own min-max range."""
    dims = tuple(range(1, x.ndim))
    lo = x.amin(dim=dims, keepdim=True)
    span = (x.amax(dim=dims, keepdim=True) - lo).clamp_min(eps)
    unit = ((x - lo) / span).clamp(0.0, 1.0)
    return lo + span * unit.pow(gamma)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale deviations from each sample's per-channel mean by `factor`."""
    mean = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)
    return mean + factor * (x - mean)


def intensity_augment(x: torch.Tensor, keys: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """Apply gamma, contrast, brightness and noise to a batch (B, C, *spatial).

    Work happens in float32 (float64 stays float64); the result has x's dtype. Steps whose
    range is the identity are skipped, so an identity config returns x unchanged.
    """
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = x.to(work)
    if config.gamma != (1.0, 1.0):
        low, high = (math.log(g) for g in config.gamma)
        gamma = torch.exp(keyed_range(keys, 1, low, high, stream=Stream.GAMMA))
        out = adjust_gamma(out, _per_sample(gamma, out.ndim).to(work))
    if config.contrast != (1.0, 1.0):
        factor = keyed_range(keys, 1, *config.contrast, stream=Stream.CONTRAST)
        out = adjust_contrast(out, _per_sample(factor, out.ndim).to(work))
    if config.brightness > 0:
        shift = keyed_range(
            keys, 1, -config.brightness, config.brightness, stream=Stream.BRIGHTNESS
        )
        out = out + _per_sample(shift, out.ndim).to(work)
    if config.noise_std > 0:
        noise = keyed_normal(keys, out[0].numel(), stream=Stream.NOISE).view(out.shape)
        out = out + config.noise_std * noise.to(work)
    return out.to(x.dtype)
