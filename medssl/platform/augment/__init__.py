"""Batched, on-device view generation with per-sample keyed randomness.

Views are a function of (seed, epoch, dataset index, view), never of batch layout or rank.
"""

from __future__ import annotations

from medssl.platform.augment.config import AugmentConfig, SignalAugmentConfig
from medssl.platform.augment.keyed import keyed_normal, keyed_range, keyed_uniform, sample_keys
from medssl.platform.augment.signal import augment_signals
from medssl.platform.augment.spatial import (
    ViewGeometry,
    affine_from_box,
    cell_centres,
    sample_geometry,
    warp,
)
from medssl.platform.augment.views import ViewGenerator, Views

__all__ = [
    "AugmentConfig",
    "SignalAugmentConfig",
    "augment_signals",
    "ViewGenerator",
    "ViewGeometry",
    "affine_from_box",
    "cell_centres",
    "Views",
    "keyed_normal",
    "keyed_range",
    "keyed_uniform",
    "sample_geometry",
    "sample_keys",
    "warp",
]
