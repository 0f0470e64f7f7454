"""Reductions by a similarity score instead of a hash: structural similarity (SSIM), normalised
mutual information, and the cosine of slice embeddings that the caller computes."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from medssl.platform.reduction.base import (
    Reducer,
    SliceImageConfig,
    check_slices,
    greedy_keep,
    greedy_keep_rows,
    to_grey,
)
from medssl.platform.registry import REDUCERS


def shrink(grey: torch.Tensor, size: int | None) -> torch.Tensor:
    """Area-average (n, H, W) slices so that the longer side is at most `size` (never enlarge)."""
    height, width = grey.shape[1:]
    if size is None or max(height, width) <= size:
        return grey
    factor = size / max(height, width)
    target = (max(1, round(height * factor)), max(1, round(width * factor)))
    return F.interpolate(grey[:, None], size=target, mode="area")[:, 0]


class _ShrunkConfig(SliceImageConfig):
    size: int | None = Field(
        128, ge=8, description="compare at most this many pixels along the longer side"
    )


def _gaussian_taps(window: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(window, dtype=like.dtype, device=like.device) - (window - 1) / 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


@REDUCERS.register("ssim")
class SSIM(Reducer):
    """Reduction by structural similarity (Wang et al., 2004, "Image Quality Assessment: From
    Error Visibility to Structural Similarity"), one of the similarity measures of Wolf et al.
    (2024). SSIM(x, y) = mean over Gaussian windows (sigma 1.5, 11 x 11) of
    (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)) on 8-bit
    slices (C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2); slices with SSIM >= threshold to a kept
    reference are dropped (same greedy pass as the hash).

    Args (Config): threshold (0.9), size (128: slices are area-averaged down to this longer
        side first; None compares at full size), scaling / window as for dhash.

    Example:
        >>> volume = torch.rand(1, 24, 24).repeat(3, 1, 1)
        >>> SSIM().select(volume)
        [0]
    """

    name: ClassVar[str] = "ssim"

    class Config(_ShrunkConfig):
        threshold: float = Field(0.9, ge=-1.0, le=1.0)

    config: Config

    def select(self, volume: torch.Tensor) -> list[int]:
        cfg = self.config
        if check_slices(volume, self.name).shape[0] == 0:
            return []
        grey = shrink(to_grey(volume, cfg.scaling, cfg.window), cfg.size)
        window = min(11, *grey.shape[1:])
        window -= 1 - window % 2  # odd, so the window has a centre
        taps = _gaussian_taps(window, 1.5, grey)

        def blur(x: torch.Tensor) -> torch.Tensor:
            x = F.conv2d(x[:, None], taps.view(1, 1, 1, -1))
            return F.conv2d(x, taps.view(1, 1, -1, 1))[:, 0]

        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        mean = blur(grey)
        var = blur(grey * grey) - mean * mean

        def near_row(i: int, rest: torch.Tensor) -> torch.Tensor:
            mu_i, mu_r = mean[i], mean[rest]
            cov = blur(grey[i] * grey[rest]) - mu_i * mu_r
            top = (2 * mu_i * mu_r + c1) * (2 * cov + c2)
            bottom = (mu_i**2 + mu_r**2 + c1) * (var[i] + var[rest] + c2)
            return (top / bottom).mean(dim=(1, 2)) >= cfg.threshold

        return greedy_keep_rows(grey.shape[0], near_row)


def _entropy(p: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim=dims)


@REDUCERS.register("mutual_information")
class MutualInformation(Reducer):
    """Reduction by normalised mutual information (Studholme et al., 1999), the
    information-theoretic measure of Wolf et al. (2024): with grey levels binned into `bins`,
    NMI(x, y) = 2 I(x; y) / (H(x) + H(y)), in [0, 1] (1 for identical slices);
    slices with NMI >= threshold to a kept reference are dropped.

    Args (Config): threshold (0.6), bins (32), size (128, as for ssim), scaling / window.

    Example:
        >>> volume = torch.rand(1, 24, 24).repeat(3, 1, 1)
        >>> MutualInformation().select(volume)
        [0]
    """

    name: ClassVar[str] = "mutual_information"

    class Config(_ShrunkConfig):
        threshold: float = Field(0.6, ge=0.0, le=1.0)
        bins: int = Field(32, ge=2, le=256)

    config: Config

    def select(self, volume: torch.Tensor) -> list[int]:
        cfg = self.config
        if check_slices(volume, self.name).shape[0] == 0:
            return []
        grey = shrink(to_grey(volume, cfg.scaling, cfg.window), cfg.size)
        n, bins = grey.shape[0], cfg.bins
        levels = torch.floor(grey.reshape(n, -1) * (bins / 256.0)).long().clamp_(0, bins - 1)
        pixels = levels.shape[1]
        marginal = torch.zeros(n, bins, device=grey.device).scatter_add_(
            1, levels, torch.ones_like(levels, dtype=torch.float32)
        )
        entropy = _entropy(marginal / pixels, (1,))

        def near_row(i: int, rest: torch.Tensor) -> torch.Tensor:
            m = len(rest)
            pair = levels[i][None, :] * bins + levels[rest]
            pair += (torch.arange(m, device=grey.device) * bins * bins)[:, None]
            joint = torch.bincount(pair.flatten(), minlength=m * bins * bins).view(m, -1)
            h_joint = _entropy(joint.float() / pixels, (1,))
            both = entropy[i] + entropy[rest]
            mutual = both - h_joint
            # Two constant slices carry no information and are identical: NMI 1.
            nmi = torch.where(both > 1e-12, 2.0 * mutual / both.clamp_min(1e-12), 1.0)
            return nmi >= cfg.threshold - 1e-6

        return greedy_keep_rows(n, near_row)


@REDUCERS.register("embedding")
class Embedding(Reducer):
    """Reduction by deep-embedding similarity (Wolf et al., 2024): the caller embeds every
    slice with a pretrained network and passes the (n_slices, D) embeddings; slices whose
    cosine similarity to a kept reference is >= threshold are dropped.

    Args (Config): threshold (0.95).

    Example:
        >>> e = torch.tensor([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0]])
        >>> Embedding({"threshold": 0.95}).select(e)
        [0, 2]
    """

    name: ClassVar[str] = "embedding"

    class Config(Reducer.Config):
        threshold: float = Field(0.95, ge=-1.0, le=1.0)

    config: Config

    def select(self, volume: torch.Tensor) -> list[int]:
        if volume.ndim != 2:
            raise ValueError(
                f"embedding: expected slice embeddings (n_slices, D); got shape {tuple(volume.shape)}"
            )
        unit = F.normalize(volume.double(), dim=1)
        return greedy_keep(unit @ unit.T >= self.config.threshold - 1e-9)
