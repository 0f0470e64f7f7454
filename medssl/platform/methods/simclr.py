"""SimCLR and DCL: two keyed views per sample, a projector MLP, and an NT-Xent or DCL loss
with negatives gathered across ranks; optionally an EMA target branch for the keys."""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medssl.platform.augment import AugmentConfig, ViewGenerator, sample_keys
from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder
from medssl.platform.engine.distributed import gather_no_grad
from medssl.platform.losses.infonce import dcl, info_nce
from medssl.platform.methods.base import Method, ema_update, projection_head
from medssl.platform.registry import METHODS


def ema_momentum_at(base: float, step: int, max_steps: int) -> float:
    """Momentum raised from `base` to 1 along a half cosine over training (BYOL's schedule)."""
    progress = min(1.0, max(0.0, step / max(1, max_steps)))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@METHODS.register("simclr")
class SimCLR(Method):
    """SimCLR (Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations"): z = normalise(g(f(view))); NT-Xent between the two views of each
    sample, all other 2B - 2 embeddings (2 x global batch - 2 under DDP) as negatives.

    With ``ema_momentum`` set, keys come from an EMA copy of encoder + projector
    (xi <- m xi + (1 - m) theta, m cosine-raised to 1), queries from the online branch, both
    views serving as queries (symmetric), as in MoCo v3 / BYOL-style targets.

    Views are drawn on the batch's device from keys of (seed, epoch, index, view), so they do
    not depend on how the batch is split across ranks.

    Args:
        encoder: any `Encoder` with `feature_dim` > 0 (its `global_features` are used).
        config: a `SimCLR.Config` or the dict of ``pretrain.method`` (a `name` key is ignored):
            temperature (tau, default 0.1), projection_dim (128), hidden_dim (512),
            loss ("infonce" or "dcl"), ema_momentum (None: no target branch), augment
            (an `AugmentConfig`).

    Example:
        >>> from medssl.platform.batch import Batch
        >>> from medssl.platform.encoders.base import EncoderOutput
        >>> class Tiny(Encoder):
        ...     def __init__(self):
        ...         super().__init__(spatial_dims=2, in_channels=1)
        ...         self.conv, self.feature_dim = nn.Conv2d(1, 8, 3), 8
        ...     def forward(self, x, dense=False):
        ...         return EncoderOutput(self.conv(x).mean(dim=(2, 3)))
        >>> method = SimCLR(Tiny(), {"projection_dim": 16, "hidden_dim": 32})
        >>> out = method(Batch(x=torch.rand(4, 1, 16, 16), index=torch.arange(4)))
        >>> sorted(out)
        ['embedding_std', 'loss', 'positive_similarity']
    """

    name: ClassVar[str] = "simclr"
    requires: ClassVar[frozenset[str]] = frozenset({"index"})
    encoder_output: ClassVar[str] = "global"

    class Config(BaseModel):
        """The ``pretrain.method`` section of SimCLR / DCL."""

        model_config = ConfigDict(extra="forbid")

        temperature: float = Field(0.1, gt=0.0)
        projection_dim: int = Field(128, ge=1)
        hidden_dim: int = Field(512, ge=1)
        loss: Literal["infonce", "dcl"] = "infonce"
        ema_momentum: float | None = Field(None, ge=0.0, lt=1.0)
        augment: AugmentConfig = Field(default_factory=AugmentConfig)

    def __init__(
        self, encoder: Encoder, config: SimCLR.Config | dict[str, Any] | None = None
    ) -> None:
        super().__init__(encoder)
        self.config = self.validate_config(config)
        cfg = self.config
        self.projector = projection_head(encoder, cfg.hidden_dim, cfg.projection_dim)
        self.views = ViewGenerator(cfg.augment)
        self.target_encoder: nn.Module | None = None
        self.target_projector: nn.Module | None = None
        self.momentum = cfg.ema_momentum
        if cfg.ema_momentum is not None:
            self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def _embed(self, images: torch.Tensor, target: bool = False) -> torch.Tensor:
        encoder = self.target_encoder if target else self.encoder
        projector = self.target_projector if target else self.projector
        assert encoder is not None and projector is not None
        return F.normalize(projector(encoder.global_features(images)), dim=1)

    def make_views(self, batch: Batch) -> torch.Tensor:
        """Both views of the batch stacked as (2B, C, *spatial): [view 0; view 1]."""
        if "index" not in batch:
            raise ValueError(
                f"method '{self.name}' needs the Batch field 'index' to key its augmentation; "
                "the data adapter must provide it"
            )
        x, index = batch["x"], batch["index"]
        views = [self.views(x, sample_keys(index, self.seed, self.epoch, v))[0] for v in (0, 1)]
        return torch.cat(views)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss, collapse monitor (`embedding_std`, ~1 when spread, 0 when collapsed) and the
        mean cosine similarity of positive pairs."""
        images = self.make_views(batch)
        # One encoder call for both views halves kernel launches.
        z1, z2 = self._embed(images).chunk(2)
        gathered = None
        if self.target_encoder is not None:
            with torch.no_grad():
                k1, k2 = self._embed(images, target=True).chunk(2)
            gathered = (gather_no_grad(k1), gather_no_grad(k2))
        loss_fn = dcl if self.config.loss == "dcl" else info_nce
        loss = loss_fn(z1, z2, self.config.temperature, gathered=gathered)
        with torch.no_grad():
            z = torch.cat([z1, z2]).float()
            spread = z.std(dim=0, correction=0).mean() * math.sqrt(z.shape[1])
            positive_similarity = (z1.float() * z2.float()).sum(dim=1).mean()
        return {"loss": loss, "embedding_std": spread, "positive_similarity": positive_similarity}

    @torch.no_grad()
    def after_optimizer_step(self, step: int, max_steps: int) -> None:
        """Move the EMA target towards the online weights (no-op without a target)."""
        if self.momentum is None or self.target_encoder is None or self.target_projector is None:
            return
        m = ema_momentum_at(self.momentum, step, max_steps)
        ema_update(
            ((self.encoder, self.target_encoder), (self.projector, self.target_projector)), m
        )

    def card(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json")}


@METHODS.register("dcl")
class DCL(SimCLR):
    """DCL (Yeh et al., 2022, "Decoupled Contrastive Learning"): SimCLR whose loss drops the
    positive from the InfoNCE denominator,
        l(u, u+) = -sim(u, u+)/tau + log sum_{v not in {u, u+}} exp(sim(u, v)/tau).
    Same arguments as `SimCLR`; ``loss`` defaults to "dcl".

    Example:
        >>> DCL.Config().loss
        'dcl'
    """

    name: ClassVar[str] = "dcl"

    class Config(SimCLR.Config):
        loss: Literal["infonce", "dcl"] = "dcl"
