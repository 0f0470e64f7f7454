"""Counter-based randomness keyed per sample, computed on the keys' device.

A sample's random numbers depend only on (seed, epoch, dataset index, view, stream), never on
batch order, rank or world size, so a 2-process DDP run draws what a 1-process run draws.
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF
# Odd multiplicative constants (murmur3 finaliser, golden ratio): each is a bijection mod 2^32.
_FMIX_C1 = 0x85EBCA6B
_FMIX_C2 = 0xC2B2AE35
_GOLDEN = 0x9E3779B1
# Distinct starting words keep the two key lanes and the output domains unrelated.
_LANE_HI = 0x243F6A88
_LANE_LO = 0x85A308D3
_DOMAIN_UNIFORM = 0x13198A2E
_DOMAIN_NORMAL = 0x03707344


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2^32 for 32-bit x, split in 16-bit halves so int64 never overflows."""
    low = x * (constant & _MASK16)  # < 2^48
    high = ((x * (constant >> 16)) & _MASK16) << 16  # < 2^32
    return (low + high) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """The murmur3 32-bit finaliser: a bijection on [0, 2^32) with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, _FMIX_C1)
    x = x ^ (x >> 13)
    x = _mul32(x, _FMIX_C2)
    return x ^ (x >> 16)


def _combine(state: torch.Tensor, word: torch.Tensor | int) -> torch.Tensor:
    """Fold a 32-bit word into a 32-bit state; a bijection in each argument separately."""
    return _mix32((_mul32(state, _GOLDEN) + (word & _MASK32) + 0x7F4A7C15) & _MASK32)


def _words(value: torch.Tensor | int) -> tuple[torch.Tensor | int, torch.Tensor | int]:
    """Split a (possibly negative) 64-bit integer into its low and high 32-bit words."""
    return value & _MASK32, (value >> 32) & _MASK32


def sample_keys(index: torch.Tensor, seed: int, epoch: int, view: int) -> torch.Tensor:
    """One 63-bit key per sample from its dataset index and the run's (seed, epoch, view).

    Args:
        index: (B,) int64 dataset positions (Batch field ``index``).
        seed: the run seed.
        epoch: the current epoch; new epochs draw new views.
        view: which view of the sample (0, 1, ...).

    Returns:
        (B,) int64 keys in [0, 2^63) on ``index``'s device.

    Example:
        >>> sample_keys(torch.tensor([0, 1]), seed=0, epoch=0, view=0).shape
        torch.Size([2])
    """
    index = torch.as_tensor(index).to(torch.int64)
    if index.ndim != 1:
        raise ValueError(
            f"index must be a 1-D tensor of dataset positions, got shape {tuple(index.shape)}"
        )
    lanes = []
    for start in (_LANE_HI, _LANE_LO):
        state = torch.full_like(index, start)
        for value in (seed, epoch, view):
            for word in _words(int(value)):
                state = _combine(state, word)
        for word in _words(index):
            state = _combine(state, word)
        lanes.append(state)
    return ((lanes[0] & 0x7FFFFFFF) << 32) | lanes[1]


def _keyed_bits(keys: torch.Tensor, n: int, stream: int, domain: int) -> torch.Tensor:
    """(B, n) 32-bit hashes of (key, stream, counter) for counters 0..n-1."""
    keys = torch.as_tensor(keys)
    if keys.ndim != 1 or keys.dtype != torch.int64:
        raise ValueError(
            f"keys must be a 1-D int64 tensor (from sample_keys), got {keys.dtype} {tuple(keys.shape)}"
        )
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    state = torch.full_like(keys, domain)
    for word in (*_words(keys), *_words(int(stream))):
        state = _combine(state, word)
    counter = torch.arange(n, device=keys.device, dtype=torch.int64)
    # Two rounds on the counter: one finaliser alone leaves consecutive counters correlated
    # in their low bits for structured states.
    bits = _combine(state[:, None], counter[None, :])
    return _mix32(bits ^ (state[:, None] >> 7))


def keyed_uniform(keys: torch.Tensor, n: int, *, stream: int) -> torch.Tensor:
    """Uniform numbers in [0, 1) that depend only on each key, the stream and the position.

    Args:
        keys: (B,) int64 keys from :func:`sample_keys`.
        n: how many numbers per key.
        stream: an integer naming what the numbers are for (crop, flip, noise, ...);
            different streams give independent numbers for the same key.

    Returns:
        (B, n) float32 on the keys' device; the first k columns do not depend on n.

    Example:
        >>> u = keyed_uniform(sample_keys(torch.arange(4), 0, 0, 0), 3, stream=1)
        >>> u.shape, bool(((u >= 0) & (u < 1)).all())
        (torch.Size([4, 3]), True)
    """
    bits = _keyed_bits(keys, n, stream, _DOMAIN_UNIFORM)
    # 24 bits are exactly representable in float32, so the result never rounds up to 1.
    return (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))


def keyed_normal(keys: torch.Tensor, n: int, *, stream: int) -> torch.Tensor:
    """Standard normal numbers by the Box-Muller transform of keyed uniforms.

    Same arguments as :func:`keyed_uniform`; returns (B, n) float32 with mean 0 and std 1.

    Example:
        >>> keyed_normal(sample_keys(torch.arange(2), 0, 0, 0), 5, stream=7).shape
        torch.Size([2, 5])
    """
    bits = _keyed_bits(keys, 2 * n, stream, _DOMAIN_NORMAL)
    u = (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))
    # 1 - u lies in (0, 1], so the logarithm is finite.
    radius = torch.sqrt(-2.0 * torch.log1p(-u[:, 0::2]))
    return radius * torch.cos((2.0 * math.pi) * u[:, 1::2])


def keyed_range(
    keys: torch.Tensor, n: int, low: float, high: float, *, stream: int
) -> torch.Tensor:
    """Uniform numbers in [low, high): a convenience over :func:`keyed_uniform`."""
    return low + (high - low) * keyed_uniform(keys, n, stream=stream)
