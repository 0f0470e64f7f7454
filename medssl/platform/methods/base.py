"""The Method contract: views -> encoder(s) -> losses.

A method supplies only what is specific to it (projector, loss, views); the engine does the
rest (optimiser, schedule, logging, checkpoints).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder


class Method(nn.Module):
    """Base class of self-supervised methods.

    Class attributes:
        requires: Batch metadata fields the method needs (checked against the modality
            before any data is read).
        encoder_output: "global" (a vector per sample), "dense" (a decoder map) or
            "sequence" (a per-step representation).
    """

    name: ClassVar[str] = "method"
    requires: ClassVar[frozenset[str]] = frozenset()
    encoder_output: ClassVar[str] = "global"

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder
        #: Mixed into keyed per-sample randomness; the engine sets it every epoch.
        self.seed = 0
        self.epoch = 0

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Return a dict with at least `loss` (scalar) and any scalars worth logging."""
        raise NotImplementedError

    def after_optimizer_step(self, step: int, max_steps: int) -> None:
        """Hook run after each optimiser step (EMA target updates live here)."""

    def card(self) -> dict[str, Any]:
        """Method settings that belong in the checkpoint card."""
        return {"name": self.name}
