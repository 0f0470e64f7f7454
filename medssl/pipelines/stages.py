"""The stages of a run: pretrain, probe, finetune, evaluate (report lives in report.py).

Each stage reads what earlier stages left in the run folder, writes its own outputs, and
records itself (and each sub-run) as done so that a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import numpy as np

from medssl.pipelines.context import RunContext, method_class
from medssl.pipelines.splits import budget_label, label_subset
from medssl.platform.checkpoint import load_model, require_contract, save_model
from medssl.platform.config import validate_section
from medssl.platform.encoders import Encoder, architecture_of
from medssl.platform.engine.pretrain import PretrainModule
from medssl.platform.engine.trainer import build_trainer, last_checkpoint, launch_world
from medssl.platform.errors import CheckpointError, ConfigError, DataError
from medssl.platform.evaluation.features import extract_features
from medssl.platform.evaluation.probes import knn_probe, linear_probe
from medssl.platform.registry import TASKS

log = logging.getLogger("medssl")


def base_card(ctx: RunContext, encoder: Encoder) -> dict[str, Any]:
    return {
        "architecture": architecture_of(encoder),
        "modality": ctx.config.data.modality,
        "preprocessing": ctx.modality.contract(),
        "dataset": ctx.dataset_name,
        "config_hash": ctx.config.config_hash(),
        "seed": ctx.config.seed,
    }


# ----------------------------------------------------------------------------- pretrain


def pretrain(ctx: RunContext) -> None:
    cfg = ctx.config.pretrain
    out = ctx.run_dir / "pretrain"
    if ctx.state.is_done("pretrain") and (out / "model.safetensors").is_file():
        log.info("pretrain: already done in %s", out)
        return
    L.seed_everything(ctx.config.seed, workers=True, verbose=False)
    encoder = ctx.build_encoder()
    cls = method_class(ctx.config)
    settings = {k: v for k, v in cfg.method.items() if k != "name"}
    method = cls(encoder, validate_section(cls.Config, settings, "pretrain.method"))
    loader = ctx.loader(ctx.train, "pretrain", cfg.batch_size, distributed_shuffle=True)
    total = cfg.max_steps or cfg.epochs * len(loader)
    epochs = cfg.epochs if cfg.max_steps is None else math.ceil(cfg.max_steps / len(loader))
    module = PretrainModule(
        method,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        total_steps=total,
        warmup_fraction=cfg.warmup_fraction,
        seed=ctx.config.seed,
    )
    trainer = build_trainer(
        ctx.config.trainer,
        root_dir=out,
        label=f"pretrain {ctx.method_name}",
        max_epochs=epochs,
        max_steps=cfg.max_steps,
        checkpoint_every_n_steps=cfg.checkpoint_every_n_steps,
    )
    resume = last_checkpoint(out)
    if resume is not None:
        print(f"[pretrain] resuming from {resume.relative_to(ctx.run_dir)}", flush=True)
    trainer.fit(module, loader, ckpt_path=resume)
    if trainer.global_rank == 0:
        card = base_card(ctx, encoder)
        card["method"] = method.card()
        card["stage"] = "pretrain"
        card["steps"] = int(trainer.global_step)
        save_model(out, encoder.state_dict(), card)
    ctx.state.mark_done("pretrain")


def load_pretrained_encoder(ctx: RunContext) -> Encoder:
    """A fresh encoder with the pretrained weights, after checking the card's contract."""
    folder = ctx.pretrained_dir()
    try:
        state, card = load_model(folder)
    except CheckpointError:
        if ctx.config.pretrain.from_checkpoint is None and "pretrain" not in ctx.config.stages:
            raise ConfigError(
                f"no pretrained model in {folder}: add 'pretrain' to stages or set "
                "pretrain.from_checkpoint to a model folder"
            ) from None
        raise
    require_contract(card.preprocessing, ctx.modality.contract(), source=str(folder))
    encoder = ctx.build_encoder()
    saved = card.architecture
    wanted = architecture_of(encoder)
    if saved.encoder != wanted["encoder"] or saved.kwargs != wanted["kwargs"]:
        raise CheckpointError(
            f"{folder}: the checkpoint holds a '{saved.encoder}' encoder with options "
            f"{saved.kwargs} but the config builds '{wanted['encoder']}' with {wanted['kwargs']}; "
            f"set encoder.name={saved.encoder} and encoder.kwargs to match"
        )
    encoder.load_state_dict(state)
    return encoder


def init_label(ctx: RunContext, init: str) -> str:
    """How an initialisation is named in reports: the method's name for pretrained weights."""
    return ctx.method_name if init == "pretrained" else init


# ----------------------------------------------------------------------------- probe


def _features(ctx: RunContext, encoder: Encoder, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    loader = ctx.loader(indices, "classification", ctx.config.probe.batch_size)
    feats, labels, _ = extract_features(encoder, loader)
    return feats, labels


def probe(ctx: RunContext) -> None:
    cfg = ctx.config.probe
    if _labels_missing(ctx):
        raise DataError(
            f"{ctx.config.data.path}: probing needs a class label for every scan; "
            "add a 'label' column to the manifest or drop 'probe' from stages"
        )
    for init in cfg.inits:
        key = f"probe:{init}"
        if ctx.state.is_done(key):
            continue
        L.seed_everything(ctx.config.seed, verbose=False)
        encoder = load_pretrained_encoder(ctx) if init == "pretrained" else ctx.build_encoder()
        train_x, train_y = _features(ctx, encoder, ctx.train)
        test_x, test_y = _features(ctx, encoder, ctx.holdout)
        position = {idx: k for k, idx in enumerate(ctx.train)}
        rows = []
        for budget in cfg.label_budgets:
            subset = label_subset(ctx.records, ctx.train, budget, ctx.config.seed, stratify=True)
            rows_idx = [position[i] for i in subset]
            for kind in cfg.kinds:
                if kind == "linear":
                    metrics = linear_probe(
                        train_x[rows_idx], train_y[rows_idx], test_x, test_y, seed=ctx.config.seed
                    )
                else:
                    metrics = knn_probe(
                        train_x[rows_idx], train_y[rows_idx], test_x, test_y, k=cfg.knn_k
                    )
                for metric, value in metrics.items():
                    rows.append(
                        ctx.row(f"probe/{kind}", init_label(ctx, init), budget_label(budget),
                                metric, value)
                    )
        print_rows(rows)
        ctx.state.mark_done(key, rows)


def _labels_missing(ctx: RunContext) -> bool:
    return any(ctx.records[i].label is None for i in ctx.train + ctx.holdout)


def print_rows(rows: list[dict[str, Any]]) -> None:
    if launch_world()[0] != 0:
        return
    for r in rows:
        value = "n/a" if r["value"] is None else f"{r['value']:.4f}"
        print(f"  {r['stage']:<16} {r['init']:<10} {r['label_budget']:>6} {r['metric']:<18} {value}")


# ----------------------------------------------------------------------------- finetune


def task_of(ctx: RunContext) -> Any:
    return TASKS.get(ctx.config.finetune.task)()


def num_classes(ctx: RunContext) -> int:
    if ctx.config.data.num_classes:
        return ctx.config.data.num_classes
    if ctx.config.finetune.task == "classification":
        values = {ctx.records[i].label for i in ctx.train + ctx.holdout}
        if None in values:
            raise DataError(
                f"{ctx.config.data.path}: classification needs a 'label' for every scan"
            )
        return max(2, int(max(values)) + 1)  # type: ignore[arg-type]
    return int(ctx.prepared.max_mask_label()) + 1
