"""ConVIRT: an image encoder and a report-text encoder trained together so that an image and
its own report land close in one space, with an optional GLoRIA word-region term."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from medssl.platform.augment import AugmentConfig, ViewGenerator, sample_keys
from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder
from medssl.platform.encoders.hf_text import PretrainedTextEncoder
from medssl.platform.encoders.text import TextTransformer
from medssl.platform.errors import ConfigError
from medssl.platform.losses.image_text import convirt_loss, gloria_local_loss
from medssl.platform.methods.base import Method
from medssl.platform.registry import METHODS

#: Options of the text tower that the data decides (the tokenizer), not the config.
DATA_SIZED = ("vocab_size", "max_tokens")
#: The text towers `text_encoder.model` picks: trained from scratch, or the pretrained
#: language model in data.preprocessing.text.model.
TEXT_TOWERS = ("scratch", "pretrained")
#: What the config may set on the pretrained tower (its sizes come from its folder).
PRETRAINED_OPTIONS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "pool")


def mlp_projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
    """ConVIRT's non-linear projection: Linear-ReLU-Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


def text_options(value: dict[str, Any]) -> dict[str, Any]:
    """The ``text_encoder`` options, checked against the tower `model` picks ("scratch":
    `TextTransformer.Config`; "pretrained": the LoRA options of `PretrainedTextEncoder`),
    with the data-sized options left to the tokenizer."""
    given = [k for k in (*DATA_SIZED, "folder") if k in value]
    if given:
        where = "data.preprocessing.text.model" if given[0] == "folder" else "data.preprocessing.text"
        raise ValueError(f"{given[0]} is set by the report tokenizer ({where}); remove it here")
    kind = value.get("model", "scratch")
    if kind not in TEXT_TOWERS:
        raise ValueError(
            f"model: 'scratch' (a transformer trained on the reports) or 'pretrained' (the "
            f"language model in data.preprocessing.text.model), got {kind!r}"
        )
    options = {k: v for k, v in value.items() if k != "model"}
    if kind == "pretrained":
        foreign = sorted(set(options) - set(PRETRAINED_OPTIONS))
        if foreign:
            raise ValueError(
                f"{foreign[0]}: not an option of the pretrained text tower (model: pretrained "
                "takes its sizes from the model folder); remove it or use one of: "
                + ", ".join(PRETRAINED_OPTIONS)
            )
        check = PretrainedTextEncoder.validate_config
        sized = {"folder": ".", "vocab_size": 64, "max_tokens": 8}
    else:
        lora = sorted(set(options) & set(PRETRAINED_OPTIONS) - {"pool"})
        if lora:
            raise ValueError(
                f"{lora[0]}: LoRA tunes a pretrained language model, but this text tower is "
                "trained from scratch; set model: pretrained (with data.preprocessing.text.model) "
                "or remove it"
            )
        check, sized = TextTransformer.validate_config, {"vocab_size": 64}
    try:
        check({**options, **sized})
    except ConfigError as err:
        raise ValueError(str(err).removeprefix("text_encoder.")) from None
    return value


def text_tower(
    options: Mapping[str, Any], vocab_size: int, max_tokens: int, text_model: str | None
) -> TextTransformer | PretrainedTextEncoder:
    """The text tower ``text_encoder.model`` names, sized by the tokenizer; ConfigError when
    it and the data's tokenizer (a local model's or a trained WordPiece) do not belong
    together."""
    key = "pretrain.method.text_encoder.model"
    rest = {k: v for k, v in options.items() if k != "model"}
    sized = {"vocab_size": vocab_size, "max_tokens": max_tokens}
    if options.get("model", "scratch") == "pretrained":
        if text_model is None:
            raise ConfigError(
                f"{key}: 'pretrained' tunes the language model in data.preprocessing.text.model, "
                "which is not set; set it to a local model folder, or use model: scratch"
            )
        return PretrainedTextEncoder({**rest, **sized, "folder": text_model})
    if text_model is not None:
        raise ConfigError(
            f"{key}: the reports are tokenised by the language model in "
            "data.preprocessing.text.model, but the text tower is trained from scratch; set "
            "pretrain.method.text_encoder={model: pretrained} to tune that model, or remove "
            "data.preprocessing.text.model"
        )
    return TextTransformer({**rest, **sized})


def data_fact(facts: Mapping[str, Any], name: str, method: str, fix: str) -> Any:
    """`facts[name]`, or a ConfigError saying what the data must provide."""
    if name not in facts:
        raise ConfigError(f"pretrain.method.name: method '{method}' needs {fix}")
    return facts[name]


@METHODS.register("convirt")
class ConVIRT(Method):
    """ConVIRT (Zhang et al., MLHC 2022, "Contrastive Learning of Medical Visual
    Representations from Paired Images and Text"): v = g_v(f(view of the image)),
    u = g_u(h(report)); symmetric InfoNCE with lambda = 0.75 on the image-to-text direction
    (`convirt_loss`). f is the run's encoder, h a transformer trained from scratch on the
    tokenised reports (`TextTransformer`) or, with ``text_encoder.model: pretrained``, the
    local language model of data.preprocessing.text.model tuned with LoRA (Hu et al., ICLR
    2022; `PretrainedTextEncoder`); g_v and g_u Linear-ReLU-Linear projectors.

    With ``local_weight`` > 0 the GLoRIA local term (Huang et al., ICCV 2021) is added: every
    word of a report attends over the regions of the last feature map of the image encoder
    (`gloria_local_loss`); it needs an encoder with `encode` (the ResNet) and costs
    O(B^2 words regions) memory.

    The image is one keyed view (`augment`); the report is used whole (up to the tokenizer's
    max_tokens), where the paper samples one sentence of it.

    Args:
        encoder: the image encoder (global features; `encode` for the local term).
        config: a `ConVIRT.Config` or the ``pretrain.method`` dict: temperature (0.1),
            image_weight (lambda, 0.75), projection_dim (512), hidden_dim (1024),
            text_encoder (model "scratch": `TextTransformer` options except vocab_size /
            max_tokens; model "pretrained": lora_rank, lora_alpha, lora_dropout,
            lora_targets, pool of `PretrainedTextEncoder`),
            local_weight (0: off), local_temperatures ((4, 5, 10)), augment.
        vocab_size / max_tokens: the tokenizer's; text_model: the local language model
            folder, or None (`build` takes all three from the data's facts).

    Example:
        >>> from medssl.platform.encoders import build_encoder
        >>> enc = build_encoder("resnet", spatial_dims=2, in_channels=1, depth=18, widen_factor=0.125)
        >>> m = ConVIRT(enc, {"text_encoder": {"width": 32, "depth": 1, "heads": 2}}, vocab_size=50, max_tokens=8)
        >>> ids = torch.randint(5, 50, (4, 8))
        >>> out = m(Batch(x=torch.rand(4, 1, 32, 32), index=torch.arange(4), text=ids, text_mask=ids > 0))
        >>> sorted(out)
        ['embedding_std', 'loss', 'pair_similarity']
    """

    name: ClassVar[str] = "convirt"
    requires: ClassVar[frozenset[str]] = frozenset({"index", "text", "text_mask"})
    encoder_output: ClassVar[str] = "global"
    embeds_text: ClassVar[bool] = True

    class Config(BaseModel):
        """The ``pretrain.method`` section of ConVIRT."""

        model_config = ConfigDict(extra="forbid")

        temperature: float = Field(0.1, gt=0.0)
        image_weight: float = Field(0.75, ge=0.0, le=1.0)
        projection_dim: int = Field(512, ge=1)
        hidden_dim: int = Field(1024, ge=1)
        text_encoder: dict[str, Any] = Field(default_factory=dict)
        local_weight: float = Field(0.0, ge=0.0)
        local_temperatures: tuple[float, float, float] = (4.0, 5.0, 10.0)
        augment: AugmentConfig = Field(default_factory=AugmentConfig)

        _text = field_validator("text_encoder")(text_options)

    def __init__(
        self,
        encoder: Encoder,
        config: ConVIRT.Config | dict[str, Any] | None = None,
        *,
        vocab_size: int,
        max_tokens: int,
        text_model: str | None = None,
    ) -> None:
        super().__init__(encoder)
        self.config = cfg = self.validate_config(config)
        self.text_encoder = text_tower(cfg.text_encoder, vocab_size, max_tokens, text_model)
        self.image_projector = mlp_projector(encoder.feature_dim, cfg.hidden_dim, cfg.projection_dim)
        self.text_projector = mlp_projector(
            self.text_encoder.feature_dim, cfg.hidden_dim, cfg.projection_dim
        )
        self.views = ViewGenerator(cfg.augment)
        self.word_projector: nn.Module | None = None
        self.region_projector: nn.Module | None = None
        if cfg.local_weight > 0:
            if not callable(getattr(encoder, "encode", None)):
                raise ConfigError(
                    f"pretrain.method.local_weight: the local term needs the encoder's feature "
                    f"map, which encoder '{encoder.name}' does not expose; use encoder.name=resnet "
                    "or set local_weight=0"
                )
            self.word_projector = nn.Linear(self.text_encoder.feature_dim, cfg.projection_dim)
            self.region_projector = nn.Linear(encoder.feature_dim, cfg.projection_dim)
        self.facts: dict[str, Any] = {"vocab_size": vocab_size, "max_tokens": max_tokens}
        if text_model is not None:
            self.facts["text_model"] = text_model

    @classmethod
    def build(cls, encoder: Encoder, config: Any, facts: Mapping[str, Any]) -> ConVIRT:
        return cls(encoder, config, **text_facts(facts, cls.name))

    # ------------------------------------------------------------------- embeddings

    def _image_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(global features, last feature map or None); the map only for the local term."""
        if self.region_projector is None:
            return self.encoder.global_features(images), None
        maps = self.encoder.encode(images)[0]  # type: ignore[operator]
        return maps.flatten(2).mean(dim=2), maps

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length joint-space embeddings (B, projection_dim) of whole images."""
        return F.normalize(self.image_projector(self._image_features(images)[0]), dim=1)

    def embed_texts(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit-length joint-space embeddings (B, projection_dim) of tokenised reports."""
        return F.normalize(self.text_projector(self.text_encoder(ids, mask).pooled), dim=1)

    def make_view(self, batch: Batch) -> torch.Tensor:
        """One keyed view per image (B, C, *spatial)."""
        keys = sample_keys(batch["index"], self.seed, self.epoch, 0)
        return self.views(batch["x"], keys)[0]

    # ------------------------------------------------------------------- training

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss, collapse monitor (`embedding_std` of the image embeddings, ~1 spread, 0
        collapsed) and the mean cosine of each image with its own report."""
        missing = sorted(self.requires - batch.fields)
        if missing:
            raise ValueError(f"method '{self.name}' needs the Batch field(s) {missing}")
        features, maps = self._image_features(self.make_view(batch))
        v = self.image_projector(features)
        text = self.text_encoder(batch["text"], batch["text_mask"].bool())
        u = self.text_projector(text.pooled)
        cfg = self.config
        loss = convirt_loss(v, u, cfg.temperature, cfg.image_weight)
        if maps is not None and self.word_projector is not None and self.region_projector is not None:
            regions = self.region_projector(maps.flatten(2).transpose(1, 2))
            words = self.word_projector(text.tokens)
            local = gloria_local_loss(
                words, word_positions(batch["text_mask"].bool()), regions, cfg.local_temperatures
            )
            loss = loss + cfg.local_weight * local
        return {"loss": loss, **pair_monitors(v, u)}

    def joint_state(self) -> dict[str, torch.Tensor]:
        """Every weight but the image encoder's: the text tower and the projectors. A
        LoRA-tuned pretrained tower leaves out its frozen base weights (the card names the
        model folder and the sha256 of those weights instead), so only the adapters are saved."""
        frozen = {f"text_encoder.{k}" for k in getattr(self.text_encoder, "frozen_keys", ())}
        return {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith("encoder.") and k not in frozen
        }

    def card(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json"), "facts": self.facts}


def text_facts(facts: Mapping[str, Any], method: str) -> dict[str, Any]:
    """vocab_size and max_tokens of the fitted tokenizer (and text_model, the local language
    model folder, when the data names one), or a ConfigError saying how to get them."""
    fix = "report text: set data.preprocessing.text and give every row a report"
    sized: dict[str, Any] = {k: int(data_fact(facts, k, method, fix)) for k in DATA_SIZED}
    if facts.get("text_model") is not None:
        sized["text_model"] = str(facts["text_model"])
    return sized


def word_positions(mask: torch.Tensor) -> torch.Tensor:
    """The real words of tokenised reports: `mask` without [CLS] (position 0) and [SEP] (the
    last real position), where the tokenizer puts them."""
    words = mask.clone()
    words[:, 0] = False
    last = (mask.sum(dim=1) - 1).clamp(min=0)
    words[torch.arange(mask.shape[0], device=mask.device), last] = False
    return words


@torch.no_grad()
def pair_monitors(v: torch.Tensor, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """`embedding_std` (spread of the unit image embeddings, ~1 spread, 0 collapsed) and
    `pair_similarity` (mean cosine of each image with its own report)."""
    zv, zu = F.normalize(v.float(), dim=1), F.normalize(u.float(), dim=1)
    spread = zv.std(dim=0, correction=0).mean() * math.sqrt(zv.shape[1])
    return {"embedding_std": spread, "pair_similarity": (zv * zu).sum(dim=1).mean()}
