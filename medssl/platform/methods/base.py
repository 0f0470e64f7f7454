"""The Method contract: views -> encoder(s) -> losses.

A method supplies only what is specific to it (projector, loss, views); the engine does the
rest (optimiser, schedule, logging, checkpoints).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from medssl.platform.batch import ITEMS, Batch, BatchSpec
from medssl.platform.encoders.base import Encoder
from medssl.platform.errors import ConfigError


class Method(nn.Module):
    """Base class of self-supervised methods.

    Class attributes:
        requires: Batch metadata fields every configuration of the method needs.
        grouping: how the items of a batch are drawn (a registered grouping of
            `medssl.platform.batch`); `batch_spec` may choose another from the settings.
        encoder_output: "global" (a vector per sample), "dense" (a decoder map) or
            "sequence" (a per-step representation).
    """

    name: ClassVar[str] = "method"
    requires: ClassVar[frozenset[str]] = frozenset()
    grouping: ClassVar[str] = ITEMS
    encoder_output: ClassVar[str] = "global"
    #: Whether the method embeds report text beside the images in one space (zero-shot
    #: classification and retrieval probe it through `embed_images` / `embed_texts`).
    embeds_text: ClassVar[bool] = False

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder
        #: Mixed into keyed per-sample randomness; the engine sets it every epoch.
        self.seed = 0
        self.epoch = 0

    @classmethod
    def build(cls, encoder: Encoder, config: Any, facts: Mapping[str, Any]) -> Method:
        """The method for `encoder` under a validated `config`. `facts` are what the data's
        fit learnt (`Modality.fit`: vocabulary size, ECG leads, ...), for methods whose
        other towers are sized by the data; most methods need none."""
        return cls(encoder, config)  # type: ignore[call-arg]

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Return a dict with at least `loss` (scalar) and any scalars worth logging."""
        raise NotImplementedError

    def joint_state(self) -> dict[str, torch.Tensor] | None:
        """Weights beyond the encoder that using the model needs (a text tower and the
        projectors of a joint image-text space), saved beside the encoder; None for methods
        whose encoder is all they leave."""
        return None

    def before_first_step(self, step: int) -> None:
        """Hook run when a fit starts, or resumes after `step` optimiser steps (for methods
        whose schedule counts steps)."""

    def after_optimizer_step(self, step: int, max_steps: int) -> None:
        """Hook run after each optimiser step (EMA target updates live here)."""

    def training_record(self) -> dict[str, Any] | None:
        """What the last training step showed beyond its logged scalars (e.g. per-channel
        statistics of a learned augmenter), as JSON values, or None; the engine keeps every
        record of a fit, in order, beside its checkpoints (`engine.records`)."""
        return None

    @classmethod
    def validate_config(cls, config: BaseModel | dict[str, Any] | None) -> Any:
        """`cls.Config` from a Config, another pydantic model or the ``pretrain.method`` dict
        (its `name` is ignored); a bad key raises ConfigError naming
        ``pretrain.method.<key>``."""
        schema = cls.Config  # type: ignore[attr-defined]
        if isinstance(config, schema):
            return config
        if isinstance(config, BaseModel):
            config = config.model_dump()
        raw = {k: v for k, v in dict(config or {}).items() if k != "name"}
        try:
            return schema.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            raise ConfigError(
                f"pretrain.method.{key}: {first['msg']} (method '{cls.name}'); fix or remove "
                "that key"
            ) from None

    @classmethod
    def batch_spec(cls, config: Any) -> BatchSpec:
        """The grouping and fields batches need under `config` (a validated `cls.Config`):
        checked against the modality before any data is read, then handed to the modality,
        whose loader draws the batches. Override where settings change them."""
        return BatchSpec(cls.grouping, cls.requires)

    @classmethod
    def input_problem(cls, config: Any, sides: tuple[int, ...], encoder: Encoder) -> str | None:
        """What keeps the method from training `encoder` on inputs of `sides` under `config`
        (a validated `cls.Config`), as "<key in the method's section>: <problem>; <fix>", or
        None. Asked before any data is read when the settings fix the input size."""
        return None

    def inference_encoder(self) -> Encoder:
        """The encoder to evaluate and save (methods that average weights return the average)."""
        return self.encoder

    def card(self) -> dict[str, Any]:
        """Method settings that belong in the checkpoint card."""
        return {"name": self.name}


def projection_head(encoder: Encoder, hidden_dim: int, projection_dim: int) -> nn.Module:
    """Linear-ReLU-Linear from the encoder's global vector to the contrastive space (SimCLR's
    projector). No batch norm: per-rank statistics would make DDP differ from one process."""
    if encoder.feature_dim < 1:
        raise ValueError(
            f"encoder '{encoder.name}' reports feature_dim {encoder.feature_dim}; it must be >= 1"
        )
    return nn.Sequential(
        nn.Linear(encoder.feature_dim, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, projection_dim),
    )


@torch.no_grad()
def ema_update(pairs: Iterable[tuple[nn.Module, nn.Module]], momentum: float) -> None:
    """Move each target module towards its online twin: xi <- m xi + (1 - m) theta for
    parameters; buffers (batch-norm statistics) are copied from the online module."""
    for online, target in pairs:
        for p_target, p_online in zip(target.parameters(), online.parameters(), strict=True):
            p_target.lerp_(p_online.detach(), 1.0 - momentum)
        for b_target, b_online in zip(target.buffers(), online.buffers(), strict=True):
            b_target.copy_(b_online)
