"""Losses: pure functions on tensors, one family a file, each with its paper.

Contrastive losses share one masked log-sum-exp (`masked_info_nce`).
"""

from __future__ import annotations

from medssl.platform.losses.image_text import convirt_loss, gloria_local_loss, more_loss
from medssl.platform.losses.infonce import dcl, info_nce, masked_info_nce, two_view_masks
from medssl.platform.losses.koleo import koleo_loss

__all__ = [
    "convirt_loss",
    "dcl",
    "gloria_local_loss",
    "info_nce",
    "koleo_loss",
    "masked_info_nce",
    "more_loss",
    "two_view_masks",
]
