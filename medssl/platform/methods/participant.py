"""Participant-level contrast for wearable biosignals: two segments of one participant are a
positive pair, keys come from an EMA target, plus KoLeo on the online projections."""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from medssl.platform.augment.keyed import sample_keys
from medssl.platform.augment.signal import SignalAugmentConfig, augment_signals
from medssl.platform.batch import ITEMS, SUBJECT_PAIRS, Batch, BatchSpec
from medssl.platform.encoders.base import Encoder
from medssl.platform.engine.distributed import gather_no_grad, rank
from medssl.platform.losses.koleo import koleo_loss
from medssl.platform.losses.participant import participant_info_nce
from medssl.platform.methods.base import Method, ema_update, projection_head
from medssl.platform.registry import METHODS

log = logging.getLogger("medssl")


def pair_partners(subject: torch.Tensor, index: torch.Tensor) -> bool:
    """Whether a batch is laid out as subject pairs: rows 2k and 2k + 1 are different items
    (dataset `index`) of one subject."""
    if subject.shape[0] < 2 or subject.shape[0] % 2:
        return False
    same = subject[0::2] == subject[1::2]
    distinct = index[0::2] != index[1::2]
    return bool((same & distinct).all())


@METHODS.register("participant")
class ParticipantContrast(Method):
    """Participant-level contrastive pretraining (Abbaspourazad et al., ICLR 2024, "Large-scale
    Training of Foundation Models for Wearable Biosignals").

    Two DIFFERENT segments of one participant, each augmented once and independently, form a
    positive pair; segments of other participants in the (global) batch are negatives. Queries
    come from the online encoder + projector, keys from an EMA copy (momentum m, constant 0.99
    in the paper), and every segment of a pair is a query, so the loss is symmetric:

        L = InfoNCE_tau(q, k_target; pairs) + w * KoLeo(q),  tau = 0.04, w = 0.1.

    Batches come from the subject-pair loader (rows 2k, 2k + 1 one participant). When a batch
    is not laid out that way (no participant has two segments, or ``positives: segment``),
    the method falls back to segment-level positives: two augmentations of each segment, and
    says so once in the log.

    Args:
        encoder: any `Encoder` for series (spatial_dims 1) with `feature_dim` > 0.
        config: a `ParticipantContrast.Config` or the ``pretrain.method`` dict: temperature,
            momentum, koleo_weight, hidden_dim (1024), projection_dim (128), positives
            ("participant" or "segment"), augment (a preset name "ecg" / "ppg" / "none" or a
            `SignalAugmentConfig` dict) and leads (lead names, needed by limb-lead
            recomputation).
    """

    name: ClassVar[str] = "participant"
    requires: ClassVar[frozenset[str]] = frozenset({"index", "subject", "fs"})
    encoder_output: ClassVar[str] = "global"

    class Config(BaseModel):
        """The ``pretrain.method`` section of participant-level contrast."""

        model_config = ConfigDict(extra="forbid")

        temperature: float = Field(0.04, gt=0.0)
        momentum: float = Field(0.99, ge=0.0, lt=1.0)
        koleo_weight: float = Field(0.1, ge=0.0)
        hidden_dim: int = Field(1024, ge=1)
        projection_dim: int = Field(128, ge=1)
        positives: Literal["participant", "segment"] = "participant"
        augment: SignalAugmentConfig = Field(
            default_factory=lambda: SignalAugmentConfig.preset("ecg")
        )
        leads: list[str] | None = None

        @model_validator(mode="after")
        def _leads(self) -> ParticipantContrast.Config:
            if self.augment.limb_leads > 0 and not self.leads:
                raise ValueError(
                    "augment.limb_leads recomputes limb leads from I and II, so it needs "
                    "pretrain.method.leads: the served leads in order, e.g. [I, II, III, aVR, "
                    "aVL, aVF]"
                )
            return self

        @field_validator("augment", mode="before")
        @classmethod
        def _preset(cls, value: Any) -> Any:
            if isinstance(value, str):
                if value not in ("ecg", "ppg", "none"):
                    raise ValueError(f"augment preset must be ecg, ppg or none, got '{value}'")
                return SignalAugmentConfig.preset(value)  # type: ignore[arg-type]
            return value

    def __init__(
        self, encoder: Encoder, config: ParticipantContrast.Config | dict[str, Any] | None = None
    ) -> None:
        super().__init__(encoder)
        if encoder.spatial_dims != 1:
            raise ValueError(
                f"method 'participant' contrasts series; encoder '{encoder.name}' has "
                f"spatial_dims {encoder.spatial_dims} (use efficientnet1d, ts2vec or a tsai one)"
            )
        self.config = self.validate_config(config)
        cfg = self.config
        self.projector = projection_head(encoder, cfg.hidden_dim, cfg.projection_dim)
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self._warned = False

    @classmethod
    def batch_spec(cls, config: ParticipantContrast.Config) -> BatchSpec:
        """Participant positives need batches of subject pairs; segment positives do not.
        KoLeo spreads each side of the pairs, which needs two rows: two pairs, or two segments
        (each seen twice)."""
        if config.positives == "participant":
            return BatchSpec(SUBJECT_PAIRS, cls.requires, min_size=4)
        return BatchSpec(ITEMS, cls.requires, min_size=2)

    def _views(self, x: torch.Tensor, index: torch.Tensor, view: int, fs: float) -> torch.Tensor:
        keys = sample_keys(index, self.seed, self.epoch, view)
        return augment_signals(x, keys, self.config.augment, fs=fs, leads=self.config.leads)

    def _project(self, x: torch.Tensor, target: bool) -> torch.Tensor:
        encoder: nn.Module = self.target_encoder if target else self.encoder
        projector = self.target_projector if target else self.projector
        return projector(encoder.global_features(x))

    def _layout(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(views, partner within the rows, group of each row)."""
        x, index, subject = batch["x"], batch["index"], batch["subject"]
        fs = float(batch["fs"].reshape(-1)[0])
        n = x.shape[0]
        rows = torch.arange(n, device=x.device)
        if self.config.positives == "participant" and pair_partners(subject, index):
            return self._views(x, index, 0, fs), rows ^ 1, subject
        if self.config.positives == "participant" and not self._warned:
            log.warning(
                "participant: this batch has no two segments of one participant side by side; "
                "falling back to segment-level positives (two augmentations of each segment)"
            )
            self._warned = True
        views = torch.cat([self._views(x, index, 0, fs), self._views(x, index, 1, fs)])
        partner = torch.cat([rows + n, rows])
        # Segment-level positives: every other segment is a negative, even one of the same
        # participant (with one participant there would be no negative at all otherwise).
        return views, partner, torch.cat([index, index])

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss = InfoNCE + w KoLeo, with `infonce`, `koleo`, the mean cosine of positive pairs
        and `embedding_std` (~1 spread, 0 collapsed) for the log."""
        for field in self.requires:
            if field not in batch:
                raise ValueError(
                    f"method 'participant' needs the Batch field '{field}'; the biosignal "
                    "adapter provides it"
                )
        views, partner, groups = self._layout(batch)
        queries = self._project(views, target=False)
        with torch.no_grad():
            keys = self._project(views, target=True)
        all_keys = gather_no_grad(keys)
        all_groups = gather_no_grad(groups)
        offset = rank() * views.shape[0]
        nce = participant_info_nce(
            queries, all_keys, partner + offset, groups, all_groups, self.config.temperature
        )
        # KoLeo within one side of the pairs: across them a row's nearest neighbour would
        # mostly be its own positive, which InfoNCE pulls close.
        first = partner > torch.arange(partner.shape[0], device=partner.device)
        koleo = (koleo_loss(queries[first]) + koleo_loss(queries[~first])) / 2
        loss = nce + self.config.koleo_weight * koleo
        with torch.no_grad():
            q = F.normalize(queries.float(), dim=1)
            k = F.normalize(keys.float(), dim=1)
            positive_similarity = (q * k[partner]).sum(dim=1).mean()
            spread = q.std(dim=0, correction=0).mean() * math.sqrt(q.shape[1])
        return {
            "loss": loss,
            "infonce": nce.detach(),
            "koleo": koleo.detach(),
            "positive_similarity": positive_similarity,
            "embedding_std": spread,
        }

    @torch.no_grad()
    def after_optimizer_step(self, step: int, max_steps: int) -> None:
        """Move the EMA target towards the online weights (constant momentum, as the paper)."""
        pairs = ((self.encoder, self.target_encoder), (self.projector, self.target_projector))
        ema_update(pairs, self.config.momentum)

    def card(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json")}
