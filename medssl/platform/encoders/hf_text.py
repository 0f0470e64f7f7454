"""A pretrained language model read from a local Hugging Face folder as the text tower of
image-report methods, tuned with LoRA adapters. transformers and peft are optional
(``pip install 'medssl[text-hf]'``) and imported only here, only when such a tower is built."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from medssl.platform.encoders.base import ConfigLike, Fraction, StrictPositiveInt, jsonable
from medssl.platform.encoders.text import TextOutput, text_output
from medssl.platform.errors import ConfigError
from medssl.platform.local_hf import MODEL_KEY, import_hf, model_folder, quiet_loading


def weights_fingerprint(model: nn.Module) -> str:
    """Hex sha256 of a model's weights (names, dtypes, shapes and bytes of its state dict, in
    name order): it names the base weights a LoRA-tuned tower needs, whatever file format
    they were read from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class PretrainedTextEncoder(nn.Module):
    """A pretrained (clinical) language model from a local folder, tuned with LoRA: the text
    tower MoRE uses (Thapa et al., 2024: a clinical LM with LoRA r 16) and a drop-in for
    ConVIRT's (Zhang et al., MLHC 2022). LoRA (Hu et al., ICLR 2022) freezes each targeted
    weight W and learns W + (alpha / r) B A with A (r x d_in), B (d_out x r), B starting at
    zero, so training starts from the pretrained model exactly.

    The model is ``AutoModel.from_pretrained(folder, local_files_only=True)`` in float32:
    nothing is downloaded and no code from the folder runs (``trust_remote_code`` stays off).
    `forward` returns `TextOutput` like `TextTransformer`: the last hidden states with padding
    zeroed, pooled at position 0 ([CLS]) or over the real tokens; `feature_dim` is the
    model's hidden size. With lora_rank > 0 only the adapters train (needs peft); with
    lora_rank 0 every weight but the unused pooler trains (full fine-tuning: use a small lr).

    Args:
        config: a `PretrainedTextEncoder.Config` or its mapping; or the options as keywords:
        folder: the model folder (config.json, weights; required).
        max_tokens: longest sequence; at most the model's max_position_embeddings (required).
        vocab_size: the tokenizer's id count; at most the model's embedding rows (required).
        lora_rank: r of the adapters, 0 for full fine-tuning (16).
        lora_alpha: LoRA's alpha; the update is scaled by alpha / r (32).
        lora_dropout: dropout on the adapters' input (0.1).
        lora_targets: names of the linear layers that get adapters; None: peft's default
            for the model type (query and value for BERT, as in Hu et al.) (None).
        pool: "cls" (position 0) or "mean" (mean over real tokens) ("cls").

    Example (a saved model folder; shapes only):
        >>> tower = PretrainedTextEncoder(folder=folder, max_tokens=16, vocab_size=80)  # doctest: +SKIP
        >>> tower(ids, ids != 0).pooled.shape  # doctest: +SKIP
        torch.Size([2, 32])
    """

    name: ClassVar[str] = "pretrained_text"

    class Config(BaseModel):
        """The options of the pretrained text tower."""

        model_config = ConfigDict(extra="forbid")

        folder: str
        max_tokens: StrictPositiveInt
        vocab_size: StrictPositiveInt
        lora_rank: Annotated[int, Field(strict=True, ge=0)] = 16
        lora_alpha: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 32.0
        lora_dropout: Fraction = 0.1
        lora_targets: list[str] | None = None
        pool: Literal["cls", "mean"] = "cls"

    config: Config

    def __init__(self, config: ConfigLike = None, **options: Any) -> None:
        super().__init__()
        if config is not None and options:
            raise TypeError(f"{self.name}: pass the options as a Config or as keywords, not both")
        self.config = cfg = self.validate_config(options if config is None else config)
        folder = model_folder(cfg.folder)
        transformers = import_hf("transformers", "a pretrained text tower")
        with quiet_loading(transformers):
            model = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True)
        # from_pretrained returns the model in eval mode; a new module trains (dropout on)
        # until its user says otherwise, as every other tower does.
        self.model = model.float().train()
        self._check_sizes(model.config)
        #: sha256 of the base weights, before any adapter: the card pins it.
        self.weights_sha256 = weights_fingerprint(self.model)
        if cfg.lora_rank > 0:
            self.model = add_lora(self.model, cfg)
        for name, parameter in self.model.named_parameters():
            # The pooler (BERT's tanh head over [CLS]) is never used: freezing it keeps DDP
            # from waiting for its gradients.
            if name.startswith("pooler.") or (cfg.lora_rank > 0 and "lora_" not in name):
                parameter.requires_grad_(False)
        self.feature_dim: int = int(model.config.hidden_size)
        #: State-dict keys that hold the folder's weights unchanged (not saved with a run).
        trained = {n for n, p in self.model.named_parameters() if p.requires_grad}
        self.frozen_keys = (
            frozenset(f"model.{k}" for k in self.model.state_dict() if k not in trained)
            if cfg.lora_rank > 0
            else frozenset()
        )

    @classmethod
    def validate_config(cls, config: ConfigLike) -> Config:
        """`cls.Config` from a Config or a mapping; ConfigError naming ``text_encoder.<key>``."""
        if isinstance(config, cls.Config):
            return config
        raw = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
        try:
            return cls.Config.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ConfigError(
                f"text_encoder.{key}: {first['msg']}, got {first.get('input')!r} "
                f"(text tower '{cls.name}')"
            ) from None

    def _check_sizes(self, model_config: Any) -> None:
        cfg = self.config
        positions = getattr(model_config, "max_position_embeddings", None)
        if positions is not None and cfg.max_tokens > int(positions):
            raise ConfigError(
                f"data.preprocessing.text.max_tokens: the model in {cfg.folder} reads at most "
                f"{positions} tokens, got max_tokens={cfg.max_tokens}; lower it"
            )
        rows = int(getattr(model_config, "vocab_size", cfg.vocab_size))
        if cfg.vocab_size > rows:
            raise ConfigError(
                f"{MODEL_KEY}: the tokenizer has {cfg.vocab_size} ids but the model in "
                f"{cfg.folder} embeds only {rows}; the tokenizer files and the weights in that "
                "folder do not belong together"
            )

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The options (and the base weights' sha256) as JSON values, for the model card."""
        return jsonable({**self.config.model_dump(), "weights_sha256": self.weights_sha256})

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> TextOutput:
        """Encode `ids` (B, L) token ids with `mask` (B, L) bool, True at real tokens
        (default: every position). Pad on the right: with pool "cls" position 0 must be real."""
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"{self.name} expects ids (B, L) with L >= 1, got {tuple(ids.shape)}")
        if ids.shape[1] > self.config.max_tokens:
            raise ValueError(
                f"{self.name} takes at most (B, {self.config.max_tokens}) tokens, got "
                f"{tuple(ids.shape)}; truncate the text or raise max_tokens"
            )
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask
        if mask.shape != ids.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"{self.name} expects a bool mask of the ids' shape {tuple(ids.shape)}, got "
                f"{tuple(mask.shape)} ({mask.dtype})"
            )
        hidden = self.model(input_ids=ids.long(), attention_mask=mask.long()).last_hidden_state
        return text_output(hidden, mask, self.config.pool)


def add_lora(model: nn.Module, cfg: PretrainedTextEncoder.Config) -> nn.Module:
    """`model` with LoRA adapters injected in place (peft's `inject_adapter_in_model`: the
    module tree and its names stay, each targeted Linear gains lora_A / lora_B)."""
    peft = import_hf("peft", f"LoRA (lora_rank {cfg.lora_rank}; 0 fine-tunes every weight)")
    lora = peft.LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_targets,
        bias="none",
    )
    try:
        return peft.inject_adapter_in_model(lora, model)
    except ValueError as error:
        raise ConfigError(
            f"pretrain.method.text_encoder.lora_targets: no adapters could be placed in the "
            f"model in {cfg.folder} ({error}); name its attention projections, e.g. "
            "lora_targets=[q_proj,v_proj]"
        ) from None
