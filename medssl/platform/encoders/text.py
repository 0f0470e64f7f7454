"""A small transformer that encodes report text (token ids) from scratch, for image-text and
signal-text contrastive methods; and the pre-LN transformer stack the patch encoders share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from torch import nn

from medssl.platform.encoders.base import (
    ConfigLike,
    Fraction,
    StrictPositiveInt,
    _option_error,
    jsonable,
    option_problem,
)
from medssl.platform.errors import ConfigError

#: A positive, finite ratio of the feed-forward width to the model width.
MLPRatio = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


def heads_problem(width: int, heads: int) -> PydanticCustomError | None:
    """The Config error when `heads` does not divide `width` (each head gets width / heads
    channels), else None."""
    if width % heads:
        return option_problem("heads", f"heads must divide width={width}", heads)
    return None


def pre_ln_transformer(
    width: int, depth: int, heads: int, mlp_ratio: float, dropout: float
) -> nn.TransformerEncoder:
    """`depth` pre-LN transformer layers (Xiong et al., ICML 2020: LayerNorm before attention
    and before the GELU MLP, residuals around both), batch-first (B, L, width).

    Example:
        >>> pre_ln_transformer(16, 2, 4, 2.0, 0.0)(torch.zeros(3, 5, 16)).shape
        torch.Size([3, 5, 16])
    """
    layer = nn.TransformerEncoderLayer(
        d_model=width,
        nhead=heads,
        dim_feedforward=max(1, round(width * mlp_ratio)),
        dropout=dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # The nested-tensor fast path never runs with norm_first; asking for it only warns.
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


@dataclass
class TextOutput:
    """What `TextTransformer` returns.

    pooled: (B, width), the [CLS] position's output (pool "cls") or the mean over real tokens
        (pool "mean"); zeros for a row without any real token.
    tokens: (B, L, width), one vector per token for word-level losses; zeros at padding.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor


def text_output(hidden: torch.Tensor, mask: torch.Tensor, pool: str) -> TextOutput:
    """Per-token states (B, L, D) zeroed at padding, and their pooling: position 0 ([CLS])
    for pool "cls", the mean over real tokens for "mean"."""
    tokens = hidden * mask[..., None].to(hidden.dtype)
    if pool == "cls":
        return TextOutput(pooled=tokens[:, 0], tokens=tokens)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(hidden.dtype)
    return TextOutput(pooled=tokens.sum(dim=1) / count, tokens=tokens)


class TextTransformer(nn.Module):
    """Transformer text encoder trained from scratch on report text: the text tower of
    contrastive image-text pretraining (CLIP, Radford et al., ICML 2021; ConVIRT, Zhang et al.,
    MLHC 2022) made small, as in BERT (Devlin et al., NAACL 2019) without the pretrained weights.

    h_0 = dropout(E_token[ids] + E_position[:L]); h = LayerNorm(PreLNTransformer(h_0)) with
    attention restricted to real tokens, so padding never changes a real token's output.
    `pooled` is h at position 0 ([CLS], where the tokenizer puts it) or the mean of h over
    real tokens. Not an image `Encoder` (its input is token ids), so it is not in ENCODERS.

    Size at the defaults: 3,192,320 + 256 * vocab_size parameters (789,760 per layer, 32,768
    positions, 512 final norm): 5,240,320 at vocab_size 8000.

    Args:
        config: a `TextTransformer.Config` or the ``text_encoder`` mapping; or, instead, the
            options below as keywords:
        vocab_size: number of token ids, >= 8 (required; the tokenizer's vocabulary).
        max_tokens: longest sequence, the number of learned positions (128).
        width: model and output width, `feature_dim` (256).
        depth: number of transformer layers (4).
        heads: attention heads; must divide width (4).
        mlp_ratio: feed-forward width / width (4.0).
        dropout: dropout on the embeddings, attention and feed-forward layers (0.1).
        pool: "cls" (position 0) or "mean" (mean over real tokens) ("cls").
        pad_id: the padding token id; `forward` derives the mask from it when none is given (0).

    Example:
        >>> model = TextTransformer(vocab_size=100, width=32, depth=1, heads=2).eval()
        >>> ids = torch.tensor([[2, 17, 45, 3, 0, 0]])  # [CLS] w w [SEP] [PAD] [PAD]
        >>> out = model(ids, ids != 0)
        >>> out.pooled.shape, out.tokens.shape
        (torch.Size([1, 32]), torch.Size([1, 6, 32]))
    """

    name: ClassVar[str] = "text_transformer"

    class Config(BaseModel):
        """The options of the text encoder (a config's ``text_encoder`` section)."""

        model_config = ConfigDict(extra="forbid")

        vocab_size: Annotated[int, Field(strict=True, ge=8)]
        max_tokens: StrictPositiveInt = 128
        width: StrictPositiveInt = 256
        depth: StrictPositiveInt = 4
        heads: StrictPositiveInt = 4
        mlp_ratio: MLPRatio = 4.0
        dropout: Fraction = 0.1
        pool: Literal["cls", "mean"] = "cls"
        pad_id: Annotated[int, Field(strict=True, ge=0)] = 0

        @model_validator(mode="after")
        def _consistent(self) -> TextTransformer.Config:
            problem = heads_problem(self.width, self.heads)
            if problem is not None:
                raise problem
            if self.pad_id >= self.vocab_size:
                raise option_problem(
                    "pad_id", f"pad_id must be below vocab_size={self.vocab_size}", self.pad_id
                )
            return self

    config: Config

    def __init__(self, config: ConfigLike = None, **options: Any) -> None:
        super().__init__()
        if config is not None and options:
            raise TypeError(
                f"{self.name}: pass the options as a Config or as keywords, not both "
                f"(got config and {sorted(options)})"
            )
        self.config = cfg = self.validate_config(options if config is None else config)
        self.feature_dim: int = cfg.width
        self.token = nn.Embedding(cfg.vocab_size, cfg.width)
        self.position = nn.Parameter(torch.zeros(1, cfg.max_tokens, cfg.width))
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = pre_ln_transformer(
            cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.dropout
        )
        self.norm = nn.LayerNorm(cfg.width)
        # BERT's initialisation of both embedding tables.
        nn.init.normal_(self.token.weight, std=0.02)
        nn.init.trunc_normal_(self.position, std=0.02)

    @classmethod
    def validate_config(cls, config: ConfigLike) -> Config:
        """`cls.Config` from a Config, another pydantic model or the ``text_encoder`` mapping;
        a bad key or value raises ConfigError naming ``text_encoder.<key>``.

        Example:
            >>> TextTransformer.validate_config({"vocab_size": 100, "width": 30, "heads": 4})
            Traceback (most recent call last):
            ...
            medssl.platform.errors.ConfigError: text_encoder.heads: heads must divide width=30, got 4 (encoder 'text_transformer'); fix it or remove it for the default 4
        """
        if isinstance(config, cls.Config):
            return config
        raw = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
        try:
            return cls.Config.model_validate(raw)
        except ValidationError as error:
            # The encoders' sentence (key, problem, value, fix), keyed under this section.
            sentence = str(_option_error(cls, error))  # type: ignore[arg-type]
            raise ConfigError(sentence.replace("encoder.kwargs", "text_encoder")) from None

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The options as JSON values: what a model card saves to rebuild the network with
        ``TextTransformer(**init_kwargs)``."""
        return jsonable(self.config.model_dump())

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> TextOutput:
        """Encode `ids` (B, L) integer token ids; `mask` (B, L) bool is True at real tokens
        (default: ``ids != pad_id``). Pad on the right: with pool "cls" position 0 must be real."""
        mask = self._checked_mask(ids, mask)
        empty = ~mask.any(dim=1)
        # A row of padding only would attend to no key (softmax of all -inf is NaN): let it
        # attend to its padding, and zero its outputs below.
        attends = mask | empty[:, None]
        h = self.dropout(self.token(ids) + self.position[:, : ids.shape[1]])
        h = self.norm(self.blocks(h, src_key_padding_mask=~attends))
        return text_output(h, mask, self.config.pool)

    def _checked_mask(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """`mask` (or the one `pad_id` gives) after checking the shapes and ids of a batch."""
        cfg = self.config
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"{self.name} expects ids (B, L) with L >= 1, got {tuple(ids.shape)}")
        if ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{self.name} expects integer token ids, got dtype {ids.dtype}")
        if ids.shape[1] > cfg.max_tokens:
            raise ValueError(
                f"{self.name} takes at most (B, {cfg.max_tokens}) tokens (max_tokens), got ids "
                f"{tuple(ids.shape)}; truncate the text or raise max_tokens"
            )
        if mask is None:
            mask = ids != cfg.pad_id
        if mask.shape != ids.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"{self.name} expects a bool mask of the ids' shape {tuple(ids.shape)}, got "
                f"{tuple(mask.shape)} ({mask.dtype})"
            )
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= cfg.vocab_size:
            raise ValueError(
                f"{self.name}: token ids must lie in [0, vocab_size) = [0, {cfg.vocab_size}), "
                f"got min id {low}, max id {high}; check the tokenizer matches vocab_size"
            )
        if cfg.pool == "cls":
            misplaced = (mask.any(dim=1) & ~mask[:, 0]).nonzero().flatten().tolist()
            if misplaced:
                raise ValueError(
                    f"{self.name}: pool 'cls' reads position 0, but rows {misplaced} are padding "
                    "there; put [CLS] first and pad on the right"
                )
        return mask
