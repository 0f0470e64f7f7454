"""The settings of batched view generation, validated with pydantic: `AugmentConfig` for
images and volumes (defaults suit CT normalised to roughly [0, 1]) and `SignalAugmentConfig`
for ECG/PPG segments. A method embeds one as `augment:`.
"""

from __future__ import annotations

from typing import Any, Literal

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


def _probability() -> Any:
    return Field(0.0, ge=0.0, le=1.0)


class SignalAugmentConfig(BaseModel):
    """The stochastic augmentation module of Abbaspourazad et al. (ICLR 2024, "Large-scale
    Training of Foundation Models for Wearable Biosignals"), plus ECG-specific options.

    Each name without a suffix is the probability (in [0, 1]; 0 switches it off) that a sample
    gets that augmentation; coins are independent and the order is ``signal.ORDER``. Signals are
    per-segment z-scored, so amplitudes are in standard deviations; durations in seconds.
    The paper states probabilities only; the magnitudes below are our choices:

    cutout_fraction (0.1): length of the zeroed run as a fraction of the segment;
        ``cutout_seconds`` (None) sets it in seconds instead.
    magnitude_warp_sigma (0.2), time_warp_sigma (0.2), warp_knots (4): a smooth curve through
        ``warp_knots + 2`` evenly spaced knots drawn from N(1, sigma^2) (cubic convolution
        between knots) scales each channel, or sets the local playback speed for time warp;
        these are the settings of Um et al. (2017), the usual reference for both warps.
    gaussian_noise_std (0.1): white noise 20 dB below the unit-variance signal.
    powerline_hz ((50, 60)), powerline_amplitude (0.1): one mains frequency per sample (those
        above fs / 2 are skipped), random phase, amplitude per lead uniform in [0, 0.1).
    baseline_wander_hz (0.2), baseline_wander_amplitude (0.25): three cosines with frequencies
        uniform in [0, 0.2) Hz, random phases, amplitude per lead uniform in [0, 0.25).
    emg_std (0.1): first-differenced Gaussian noise (power rising with frequency, as muscle
        activity lies above ~20 Hz) under a smooth burst envelope in [0, 1].
    lead_mask_fraction (0.5): each lead is zeroed with this probability, never every lead.
    limb_leads: recompute III, aVR, aVL, aVF (those present) from I and II.

    Example:
        >>> SignalAugmentConfig.preset("ppg").cutout
        0.4
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cutout: float = _probability()
    cutout_fraction: float = Field(0.1, gt=0.0, le=1.0)
    cutout_seconds: float | None = Field(None, gt=0.0)
    magnitude_warp: float = _probability()
    magnitude_warp_sigma: float = Field(0.2, ge=0.0)
    gaussian_noise: float = _probability()
    gaussian_noise_std: float = Field(0.1, ge=0.0)
    channel_permutation: float = _probability()
    time_warp: float = _probability()
    time_warp_sigma: float = Field(0.2, ge=0.0)
    warp_knots: int = Field(4, ge=0, le=64)
    powerline: float = _probability()
    powerline_hz: tuple[float, ...] = (50.0, 60.0)
    powerline_amplitude: float = Field(0.1, ge=0.0)
    baseline_wander: float = _probability()
    baseline_wander_hz: float = Field(0.2, gt=0.0)
    baseline_wander_amplitude: float = Field(0.25, ge=0.0)
    emg: float = _probability()
    emg_std: float = Field(0.1, ge=0.0)
    lead_mask: float = _probability()
    lead_mask_fraction: float = Field(0.5, ge=0.0, le=1.0)
    limb_leads: float = _probability()

    @field_validator("powerline_hz")
    @classmethod
    def _positive_frequencies(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or min(value) <= 0:
            raise ValueError(f"must list one or more positive frequencies in Hz, got {value}")
        return value

    @classmethod
    def preset(cls, name: Literal["ecg", "ppg", "none"]) -> SignalAugmentConfig:
        """The paper's probabilities for PPG or ECG, or every augmentation off.

        The ECG preset leaves the ECG extras off: the paper's ECG is a single band-pass
        filtered lead, so lead masking and limb leads do not apply and the filter removes most
        mains and wander; switch them on for multi-lead or unfiltered recordings.
        """
        if name == "ppg":
            return cls(
                cutout=0.4,
                magnitude_warp=0.25,
                gaussian_noise=0.25,
                channel_permutation=0.25,
                time_warp=0.15,
            )
        if name == "ecg":
            return cls(cutout=0.8, magnitude_warp=0.5, gaussian_noise=0.5, time_warp=0.3)
        if name == "none":
            return cls()
        raise ValueError(f"preset must be 'ecg', 'ppg' or 'none', got {name!r}")
