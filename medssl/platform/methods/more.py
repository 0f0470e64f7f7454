"""MoRE: radiograph, ECG and report in one space, the report as the anchor; ConVIRT's towers
plus an ECG transformer over convolutional patches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder
from medssl.platform.encoders.factory import build_encoder, check_encoder
from medssl.platform.errors import ConfigError
from medssl.platform.losses.image_text import more_loss
from medssl.platform.methods.convirt import (
    ConVIRT,
    data_fact,
    mlp_projector,
    pair_monitors,
    text_facts,
)
from medssl.platform.registry import METHODS

#: The ECG tower's registered encoder.
ECG_ENCODER = "ecg_patch"


def ecg_options(value: dict[str, Any]) -> dict[str, Any]:
    """The ``ecg_encoder`` options, checked against the ECG tower's Config."""
    try:
        check_encoder(ECG_ENCODER, 1, value)
    except ConfigError as err:
        raise ValueError(str(err).removeprefix("encoder.kwargs.")) from None
    return value


@METHODS.register("more")
class MoRE(ConVIRT):
    """MoRE (Thapa et al., 2024, "MoRE: Multi-Modal Contrastive Pre-training with
    Transformers on X-Rays, ECGs, and Diagnostic Report"): report embeddings t, image
    embeddings v, ECG embeddings e in one space; loss = mean of the symmetric InfoNCE
    t<->v and t<->e (`more_loss`), with no v<->e term. Rows without an ECG (`ecg_present`
    False) train the text-image term only.

    The image and text towers are ConVIRT's; the ECG tower is `ecg_patch` (a convolutional
    patch embedding and a transformer) with its own projector. The paper tunes a pretrained
    clinical language model with LoRA r 16: that is ``text_encoder: {model: pretrained}``
    with the model folder in data.preprocessing.text.model; by default the text tower is
    trained from scratch on the tokenised reports. Nothing is downloaded.

    Args:
        encoder: the image encoder.
        config: a `MoRE.Config` or the ``pretrain.method`` dict: ConVIRT's options (its
            image_weight is unused: both pairs are symmetric; it has no local term) plus
            ecg_encoder (the `ecg_patch` options).
        vocab_size / max_tokens: the tokenizer's; text_model: the local language model
            folder or None; ecg_leads: leads of the ECG segments (`build` takes them from
            the data's facts).

    Example:
        >>> from medssl.platform.encoders import build_encoder
        >>> enc = build_encoder("resnet", spatial_dims=2, in_channels=1, depth=18, widen_factor=0.125)
        >>> cfg = {"text_encoder": {"width": 32, "depth": 1, "heads": 2},
        ...        "ecg_encoder": {"width": 32, "depth": 1, "heads": 2}}
        >>> m = MoRE(enc, cfg, vocab_size=50, max_tokens=8, ecg_leads=2)
        >>> ids = torch.randint(5, 50, (4, 8))
        >>> batch = Batch(x=torch.rand(4, 1, 32, 32), index=torch.arange(4), text=ids,
        ...               text_mask=ids > 0, ecg=torch.randn(4, 2, 1000),
        ...               ecg_present=torch.tensor([True, True, False, True]))
        >>> sorted(m(batch))
        ['ecg_pair_similarity', 'embedding_std', 'loss', 'pair_similarity']
    """

    name: ClassVar[str] = "more"
    requires: ClassVar[frozenset[str]] = frozenset(
        {"index", "text", "text_mask", "ecg", "ecg_present"}
    )

    class Config(ConVIRT.Config):
        """The ``pretrain.method`` section of MoRE."""

        ecg_encoder: dict[str, Any] = Field(default_factory=dict)

        _ecg = field_validator("ecg_encoder")(ecg_options)

    def __init__(
        self,
        encoder: Encoder,
        config: MoRE.Config | dict[str, Any] | None = None,
        *,
        vocab_size: int,
        max_tokens: int,
        ecg_leads: int,
        text_model: str | None = None,
    ) -> None:
        cfg = self.validate_config(config)
        if cfg.local_weight > 0:
            raise ConfigError(
                "pretrain.method.local_weight: method 'more' has no word-region term; remove "
                "local_weight (or use method convirt)"
            )
        super().__init__(
            encoder, cfg, vocab_size=vocab_size, max_tokens=max_tokens, text_model=text_model
        )
        self.ecg_encoder = build_encoder(
            ECG_ENCODER, spatial_dims=1, in_channels=ecg_leads, **cfg.ecg_encoder
        )
        self.ecg_projector = mlp_projector(
            self.ecg_encoder.feature_dim, cfg.hidden_dim, cfg.projection_dim
        )
        self.facts = {**self.facts, "ecg_leads": ecg_leads}

    @classmethod
    def build(cls, encoder: Encoder, config: Any, facts: Mapping[str, Any]) -> MoRE:
        fix = "ECG segments: set data.preprocessing.ecg and give the manifest an ecg column"
        leads = int(data_fact(facts, "ecg_leads", cls.name, fix))
        return cls(encoder, config, **text_facts(facts, cls.name), ecg_leads=leads)

    def embed_ecgs(self, ecg: torch.Tensor) -> torch.Tensor:
        """Unit-length joint-space embeddings (B, projection_dim) of ECG segments."""
        return F.normalize(self.ecg_projector(self.ecg_encoder.global_features(ecg)), dim=1)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss and monitors: `embedding_std` of the images, `pair_similarity` (image with
        its report) and `ecg_pair_similarity` (ECG with its report, rows with an ECG)."""
        missing = sorted(self.requires - batch.fields)
        if missing:
            raise ValueError(f"method '{self.name}' needs the Batch field(s) {missing}")
        v = self.image_projector(self.encoder.global_features(self.make_view(batch)))
        u = self.text_projector(self.text_encoder(batch["text"], batch["text_mask"].bool()).pooled)
        e = self.ecg_projector(self.ecg_encoder.global_features(batch["ecg"]))
        present = batch["ecg_present"].bool()
        loss = more_loss(u, v, e, self.config.temperature, ecg_present=present)
        monitors = pair_monitors(v, u)
        with torch.no_grad():
            cosine = (F.normalize(e.float(), dim=1) * F.normalize(u.float(), dim=1)).sum(dim=1)
            monitors["ecg_pair_similarity"] = (cosine * present).sum() / present.sum().clamp(min=1)
        return {"loss": loss, **monitors}
