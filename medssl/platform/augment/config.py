"""The settings of batched view generation, validated with pydantic.

Defaults suit CT volumes normalised to roughly [0, 1]; a method embeds this as `augment:`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AugmentConfig(BaseModel):
    """How each view is drawn. Every range is (low, high) with low <= high.

    Spatial (one sampling grid per view):
        crop_scale: fraction of the input area/volume the random crop covers.
        aspect_ratio: range of the crop's side ratio (log-uniform), as in RandomResizedCrop.
        flip_prob: probability of mirroring each spatial axis.
        rotate_degrees: rotation angle drawn from [-rotate_degrees, rotate_degrees]
            (one plane in 2D, each of the three planes in 3D).
        scale_range: isotropic zoom factor (>1 zooms in); zooming out stops at the input border.
        output_size: spatial size of the views; default the input's.
        padding_mode: what rotated corners outside the input show (grid_sample's padding_mode).
    Intensity (per-sample parameters, applied in this order):
        gamma: gamma exponent range (log-uniform) on the per-sample min-max range.
        contrast: factor range scaling deviations from the per-sample, per-channel mean.
        brightness: additive shift drawn from [-brightness, brightness].
        noise_std: standard deviation of added Gaussian noise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    crop_scale: tuple[float, float] = (0.4, 1.0)
    aspect_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_prob: float = Field(0.5, ge=0.0, le=1.0)
    rotate_degrees: float = Field(15.0, ge=0.0, le=180.0)
    scale_range: tuple[float, float] = (0.9, 1.1)
    output_size: tuple[int, ...] | None = None
    padding_mode: Literal["zeros", "border", "reflection"] = "border"
    brightness: float = Field(0.1, ge=0.0)
    contrast: tuple[float, float] = (0.8, 1.2)
    gamma: tuple[float, float] = (0.8, 1.25)
    noise_std: float = Field(0.02, ge=0.0)

    @field_validator("crop_scale", "aspect_ratio", "scale_range", "contrast", "gamma")
    @classmethod
    def _positive_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high:
            raise ValueError(f"must be (low, high) with 0 < low <= high, got ({low}, {high})")
        return value

    @field_validator("crop_scale")
    @classmethod
    def _fraction(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[1] > 1:
            raise ValueError(f"must lie in (0, 1], got {value}")
        return value

    @field_validator("output_size")
    @classmethod
    def _size(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (len(value) not in (2, 3) or min(value) < 1):
            raise ValueError(f"must list 2 or 3 positive sizes, got {value}")
        return value

    @classmethod
    def identity(cls) -> AugmentConfig:
        """A configuration that returns the input unchanged (useful for tests and probes)."""
        return cls(
            crop_scale=(1.0, 1.0),
            aspect_ratio=(1.0, 1.0),
            flip_prob=0.0,
            rotate_degrees=0.0,
            scale_range=(1.0, 1.0),
            brightness=0.0,
            contrast=(1.0, 1.0),
            gamma=(1.0, 1.0),
            noise_std=0.0,
        )
