"""The joint image-text space of image-report methods: saved beside the pretrained encoder
(`pretrain/joint/`: the text tower, the projectors and the tokenizer the reports were
encoded with; of a LoRA-tuned language model only the adapters, the card naming its base
weights), loaded back with its card checked, and probed by zero-shot classification and
retrieval on the held-out subjects."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch

from medssl.modalities.text import load_tokenizer
from medssl.pipelines.context import RunContext, method_settings
from medssl.platform.checkpoint import load_model, save_model
from medssl.platform.errors import CheckpointError, ConfigError, DataError
from medssl.platform.evaluation.features import extract_joint_embeddings, module_device
from medssl.platform.evaluation.retrieval import retrieval_scores, zero_shot_scores
from medssl.platform.io import atomic_write
from medssl.platform.methods.base import Method
from medssl.platform.registry import METHODS

#: Probe kinds that read the joint space.
JOINT_KINDS = ("zeroshot", "retrieval")
JOINT_FOLDER = "joint"
TOKENIZER_FILE = "tokenizer.json"


def joint_folder(model_folder: Path) -> Path:
    """Where the joint space of the model in `model_folder` lives."""
    return Path(model_folder) / JOINT_FOLDER


def check_joint_probes(config: Any) -> None:
    """Before any data is read: zero-shot and retrieval probes need a last pretraining phase
    that embeds text beside the images."""
    kinds = [k for k in config.probe.kinds if k in JOINT_KINDS]
    if not kinds or "probe" not in config.stages:
        return
    phases = config.pretrain.phases()
    cls, _ = method_settings(config, len(phases) - 1)
    if not cls.embeds_text:
        able = [n for n in METHODS.names() if METHODS.get(n).embeds_text]
        raise ConfigError(
            f"probe.kinds: '{kinds[0]}' needs a method that embeds report text with the images "
            f"({', '.join(able)}), but pretraining uses '{cls.name}'; remove {kinds} from "
            "probe.kinds or change the method"
        )


def save_joint(ctx: RunContext, model_folder: Path, method: Method) -> None:
    """Write the method's joint state, its card and a copy of the tokenizer the reports were
    encoded with into `<model_folder>/joint/`."""
    state = method.joint_state()
    if state is None:
        return
    folder = joint_folder(model_folder)
    tokenizer = Path(ctx.facts["tokenizer_file"])
    atomic_write(folder / TOKENIZER_FILE, lambda tmp: shutil.copyfile(tokenizer, tmp))
    text_tower = method.text_encoder  # type: ignore[attr-defined]
    card = {
        "architecture": {"encoder": text_tower.name, "kwargs": text_tower.init_kwargs},
        "method": method.card(),
        "stage": "pretrain",
        "tokenizer": {"file": TOKENIZER_FILE, "sha256": ctx.facts["tokenizer_sha256"]},
        "config_hash": ctx.config.config_hash(),
        "preprocessing": ctx.modality.contract(),
        "text": (ctx.config.data.preprocessing or {}).get("text"),
    }
    save_model(folder, state, card)


def load_joint(ctx: RunContext, model_folder: Path, encoder: Any) -> Method:
    """The image-text method saved in `<model_folder>/joint/` around `encoder` (the
    pretrained image encoder), after checking that its tokenizer is there, unchanged, and
    the one the run's reports were encoded with."""
    folder = joint_folder(model_folder)
    if not (folder / "model.json").is_file():
        raise CheckpointError(
            f"{model_folder} holds no joint image-text space ({folder} is missing); zero-shot "
            "and retrieval probes need a model pretrained by an image-text method (convirt, more)"
        )
    state, card = load_model(folder)
    tokenizer_card = getattr(card, "tokenizer", None) or {}
    tokenizer = folder / str(tokenizer_card.get("file", TOKENIZER_FILE))
    if not tokenizer.is_file():
        raise CheckpointError(
            f"{tokenizer} is missing: the model card names it and the text encoder cannot "
            "read reports without it; copy it back from the run that trained the model"
        )
    found = load_tokenizer(tokenizer).sha256
    if found != tokenizer_card.get("sha256"):
        raise CheckpointError(
            f"{tokenizer} is not the tokenizer the model was trained with (sha256 {found[:12]}, "
            f"card {str(tokenizer_card.get('sha256'))[:12]}); restore the original file"
        )
    if found != ctx.facts.get("tokenizer_sha256"):
        raise DataError(
            f"the reports of this run were tokenised with another tokenizer than {tokenizer}; "
            "run with pretrain.from_checkpoint set to that model folder so its tokenizer is used"
        )
    settings = {k: v for k, v in card.method.items() if k not in ("name", "facts")}
    cls = METHODS.get(card.method["name"])
    facts = dict(card.method.get("facts", {}))
    if "text_model" in facts and "text_model" in ctx.facts:
        facts["text_model"] = ctx.facts["text_model"]  # where the run finds it now
    method = cls.build(encoder, cls.validate_config(settings), facts)
    check_base_weights(folder, card.architecture.kwargs, method)
    _, unexpected = method.load_state_dict(state, strict=False)
    stray = sorted(set(method.joint_state() or {}) - set(state)) + list(unexpected)
    if stray:
        raise CheckpointError(
            f"{folder}: the saved joint space does not fit method '{cls.name}' (e.g. {stray[0]}); "
            "re-run pretraining with this medssl"
        )
    return method


def check_base_weights(folder: Path, kwargs: dict[str, Any], method: Method) -> None:
    """A LoRA-tuned text tower saves only its adapters: refuse base weights other than the
    ones the card's sha256 names."""
    expected = kwargs.get("weights_sha256")
    tower = getattr(method, "text_encoder", None)
    found = getattr(tower, "weights_sha256", None)
    if expected is None or found == expected:
        return
    source = getattr(getattr(tower, "config", None), "folder", "the model folder")
    raise CheckpointError(
        f"{folder}: its text tower was tuned from base weights with sha256 {str(expected)[:12]}, "
        f"but {source} holds weights with sha256 {str(found)[:12]}; point "
        "data.preprocessing.text.model at the model folder it was tuned from"
    )


def random_joint(ctx: RunContext) -> Method:
    """The run's image-text method with fresh weights (random towers), seeded by the run."""
    phases = ctx.config.pretrain.phases()
    cls, settings = method_settings(ctx.config, len(phases) - 1)
    L.seed_everything(ctx.config.seed, verbose=False)
    return cls.build(ctx.build_encoder(), settings, ctx.facts)


def joint_rows(ctx: RunContext, init: str, encoder: Any, label: str) -> list[dict[str, Any]]:
    """The joint-space probe rows of an init: the saved space around the pretrained
    `encoder`, or a freshly initialised one for "random"."""
    if init == "pretrained":
        method = load_joint(ctx, ctx.pretrained_dir(), encoder)
    else:
        method = random_joint(ctx)
    return joint_probe(ctx, method, label)


def joint_probe(ctx: RunContext, method: Method, init: str) -> list[dict[str, Any]]:
    """Zero-shot classification and image<->report Recall@1/5/10 on the held-out subjects
    (the pair's own report, or image, is the hit)."""
    cfg = ctx.config.probe
    loader = ctx.loader(ctx.holdout, "evaluate", cfg.batch_size)
    images, texts, labels = extract_joint_embeddings(method, loader)
    rows = []
    if "retrieval" in cfg.kinds:
        for metric, value in retrieval_scores(images, texts).items():
            rows.append(ctx.row("retrieval", init, "none", metric, value))
    if "zeroshot" in cfg.kinds:
        if labels is None:
            raise DataError(
                f"{ctx.config.data.path}: zero-shot classification is scored against class "
                "labels; give the held-out rows a label or drop zeroshot from probe.kinds"
            )
        prompts = prompt_embeddings(ctx, method)
        for metric, value in zero_shot_scores(images, prompts, labels).items():
            rows.append(ctx.row("zeroshot", init, "none", metric, value))
    return rows


def prompt_embeddings(ctx: RunContext, method: Method) -> list[torch.Tensor]:
    """Each class's prompts (classes in label order) through the run's tokenizer and the
    method's text tower."""
    tokenizer = load_tokenizer(ctx.facts["tokenizer_file"])
    device = module_device(method)
    out = []
    method.eval()
    with torch.no_grad():
        for label in sorted(ctx.config.probe.prompts):
            texts = [t for t in ctx.config.probe.prompts[label] if t.strip()]
            ids, mask = tokenizer.encode(texts, int(ctx.facts["max_tokens"]))
            ids_t, mask_t = torch.as_tensor(ids).to(device), torch.as_tensor(mask).to(device)
            out.append(method.embed_texts(ids_t, mask_t).cpu())  # type: ignore[operator]
    return out
