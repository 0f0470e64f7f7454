"""The finetune and evaluate stages: every (initialisation, label budget, repeat) trains on
the same labelled subset, optionally picks its checkpoint on a validation split carved from
that subset, and is scored on the hold-out; repeats are reported as mean and spread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from medssl.pipelines.context import RunContext
from medssl.pipelines.splits import budget_label, label_subset, split_validation
from medssl.pipelines.stages import (
    base_card,
    init_label,
    load_pretrained,
    num_classes,
    print_rows,
    task_of,
)
from medssl.pipelines.tasks.pretrained import selected_parameter_names
from medssl.platform.checkpoint import load_model, save_model
from medssl.platform.engine.trainer import build_trainer, last_checkpoint
from medssl.platform.errors import ConfigError, DataError
from medssl.platform.io import atomic_write_json

BEST = "best"  # sub-folder of a fine-tuning run holding the checkpoint picked on validation
HOLDOUT_METRICS = "holdout_metrics.json"


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning sub-run: `labelled` is the budget's subset, split into `train` and
    `val` (empty when no validation is asked for); `seed` drives init and data order."""

    init: str
    budget: int | float
    repeat: int
    seed: int
    labelled: list[int]
    train: list[int]
    val: list[int]
    folder: Path

    @property
    def group(self) -> str:
        """The (init, budget) the repeats of this run are averaged over."""
        return f"{self.init}-{budget_label(self.budget).replace('%', 'pct')}"


def with_target(ctx: RunContext, indices: Sequence[int]) -> list[int]:
    """The scans among `indices` that carry the task's target (a mask, or a class label):
    unlabelled scans still join pretraining but are never drawn for a label budget or scored."""
    if ctx.config.finetune.task == "segmentation":
        return [i for i in indices if ctx.prepared.has_mask(i)]
    return [i for i in indices if ctx.records[i].label is not None]


def scored_holdout(ctx: RunContext) -> list[int]:
    held = with_target(ctx, ctx.holdout)
    if not held:
        raise DataError(
            f"{ctx.config.data.path}: none of the {len(ctx.holdout)} held-out scans has a "
            f"{'mask' if ctx.config.finetune.task == 'segmentation' else 'label'} to score; "
            "label more scans or raise data.holdout_fraction"
        )
    return held


def finetune_runs(ctx: RunContext) -> list[FinetuneRun]:
    """Every fine-tuning sub-run of the config, in order. The labelled subset and its
    validation split depend only on (seed, budget): every init and repeat sees the same."""
    cfg = ctx.config.finetune
    stratify = cfg.task == "classification"
    pool = with_target(ctx, ctx.train)
    runs = []
    for budget in cfg.label_budgets:
        labelled = label_subset(ctx.records, pool, budget, ctx.config.seed, stratify=stratify)
        train, val = labelled, []
        if cfg.validation_fraction > 0:
            train, val = split_validation(
                ctx.records, labelled, cfg.validation_fraction, ctx.config.seed
            )
        for init in cfg.inits:
            for repeat in range(cfg.repeats):
                name = f"{init}-{budget_label(budget).replace('%', 'pct')}"
                if cfg.repeats > 1:
                    name += f"-r{repeat}"
                folder = ctx.run_dir / "finetune" / name
                seed = ctx.config.seed + repeat
                runs.append(FinetuneRun(init, budget, repeat, seed, labelled, train, val, folder))
    return runs


def run_label(ctx: RunContext, run: FinetuneRun, stage: str) -> str:
    """How progress lines name a sub-run: `finetune simclr 2`, `evaluate scratch 2 r1`."""
    label = f"{stage} {init_label(ctx, run.init)} {budget_label(run.budget)}"
    return label + (f" r{run.repeat}" if ctx.config.finetune.repeats > 1 else "")


class FreezeEncoder(Callback):
    """Drops the gradients of the named (pretrained encoder) parameters for the first `steps`
    optimiser steps, so that the head (and decoder) first fit the features as they are:
    linear probing, then fine-tuning (LP-FT, Kumar et al., ICLR 2022). Optimisers skip
    parameters without a gradient, so neither Adam moments nor weight decay touch them."""

    def __init__(self, names: set[str], steps: int) -> None:
        self.names = names
        self.steps = steps

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step >= self.steps:
            return
        for name, param in pl_module.model.named_parameters():
            if name in self.names:
                param.grad = None


class SelectOnValidation(Callback):
    """Every `every` optimiser steps, and after the last, scores the model with `score` and
    keeps the best weights in `folder` (a model folder; its card records metric, value and
    step). The best so far is read back from `folder`, so a resumed run keeps selecting."""

    def __init__(
        self,
        score: Callable[[nn.Module], float],
        metric: str,
        higher_is_better: bool,
        every: int,
        folder: Path,
        card: dict[str, Any],
    ) -> None:
        self.score = score
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.every = every
        self.folder = folder
        self.card = card

    def best(self) -> float | None:
        path = self.folder / "model.json"
        if not path.is_file():
            return None
        return float(json.loads(path.read_text())["selection"]["value"])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        step = int(trainer.global_step)
        last = trainer.max_steps is not None and step >= trainer.max_steps
        if step == 0 or (step % self.every and not last):
            return
        value = float(self.score(pl_module.model))
        pl_module.log(f"val/{self.metric}", value, batch_size=1)
        best = self.best()
        better = best is None or (value > best if self.higher_is_better else value < best)
        if better and trainer.global_rank == 0:
            selection = {"metric": self.metric, "value": value, "step": step}
            save_model(self.folder, pl_module.model.state_dict(), {**self.card, "selection": selection})


def _callbacks(ctx: RunContext, run: FinetuneRun, task: Any, model: nn.Module, card: dict[str, Any]) -> list[Callback]:
    cfg = ctx.config.finetune
    callbacks: list[Callback] = []
    if cfg.freeze_encoder_steps:
        names = selected_parameter_names(model.encoder, prefix="encoder.")
        callbacks.append(FreezeEncoder(names, cfg.freeze_encoder_steps))
    if run.val:
        metric, higher = task.selection_metric
        callbacks.append(
            SelectOnValidation(
                lambda m: task.validation_score(m, ctx, run.val),
                metric, higher, cfg.eval_every_n_steps, run.folder / BEST, card,
            )
        )
    return callbacks


def finetune(ctx: RunContext) -> None:
    cfg = ctx.config.finetune
    task = task_of(ctx)
    classes = num_classes(ctx)
    pretrained: dict[str, tuple[dict[str, torch.Tensor], list[str] | None]] = {}
    for run in finetune_runs(ctx):
        key = f"finetune:{run.folder.name}"
        if ctx.state.is_done(key) and (run.folder / "model.safetensors").is_file():
            continue
        state, keys = None, None
        if run.init != "scratch":
            if run.init not in pretrained:
                source, changed = load_pretrained(ctx, run.init)
                pretrained[run.init] = (source.state_dict(), changed)
            state, keys = pretrained[run.init]
        # Seeded after any loading, so every init and repeat draws its head the same way.
        L.seed_everything(run.seed, workers=True, verbose=False)
        encoder = ctx.build_encoder()
        model = task.build_model(encoder, classes, pretrained_state=state, keys=keys)
        # An epoch is a pass over the items served: slices for 2-D encoders on volumes.
        items = len(ctx.dataset(run.train, task.purpose)) if ctx.modality.serves_parts else len(run.train)
        steps = cfg.max_steps or cfg.epochs * max(1, math.ceil(items / cfg.batch_size))
        loader = ctx.loader(
            run.train, task.purpose, cfg.batch_size, samples=steps * cfg.batch_size, seed=run.seed
        )
        module = task.module(
            model, lr=cfg.lr, weight_decay=cfg.weight_decay, total_steps=steps,
            warmup_fraction=cfg.warmup_fraction,
        )
        card = base_card(ctx, encoder)
        card.update(
            stage="finetune", task=cfg.task, num_classes=classes, init=run.init,
            label_budget=budget_label(run.budget), labelled_scans=len(run.labelled),
            training_scans=len(run.train), validation_scans=len(run.val), seed=run.seed,
            label_map=ctx.modality.label_map(str(ctx.config.data.path)),
        )
        trainer = build_trainer(
            ctx.config.trainer,
            root_dir=run.folder,
            label=run_label(ctx, run, "finetune"),
            max_epochs=1,
            max_steps=steps,
            checkpoint_every_n_steps=cfg.checkpoint_every_n_steps,
            extra_callbacks=_callbacks(ctx, run, task, model, card),
        )
        picked = f", checkpoint picked on {len(run.val)} validation items" if run.val else ""
        print(
            f"[finetune] {init_label(ctx, run.init)} with {budget_label(run.budget)} labelled "
            f"({len(run.train)} training items{picked}), seed {run.seed}, {steps} steps",
            flush=True,
        )
        try:
            trainer.fit(module, loader, ckpt_path=last_checkpoint(run.folder))
        except FloatingPointError as exc:  # a diverged loss: finetune.lr is the usual cause
            raise ConfigError(f"finetune.lr {cfg.lr}: {exc}") from None
        if trainer.global_rank == 0:
            save_model(run.folder, model.state_dict(), card)
        ctx.state.mark_done(key)


def named_metric(metric: str, names: dict[int, str]) -> str:
    """`dice/1` -> `dice/liver` when the dataset names its labels."""
    head, _, tail = metric.partition("/")
    if tail.isdigit() and int(tail) in names:
        return f"{head}/{names[int(tail)]}"
    return metric


def _holdout_metrics(ctx: RunContext, task: Any, classes: int, run: FinetuneRun) -> dict[str, float]:
    """The hold-out metrics of one sub-run (its validation pick when there is one), computed
    once and kept beside its weights."""
    path = run.folder / HOLDOUT_METRICS
    if ctx.state.is_done(f"evaluate:{run.folder.name}") and path.is_file():
        return json.loads(path.read_text())
    source = run.folder / BEST if (run.folder / BEST / "model.safetensors").is_file() else run.folder
    state, card = load_model(source)
    model = task.build_model(ctx.build_encoder(), classes, pretrained_state=None)
    model.load_state_dict(state)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    extra: dict[str, Any] = {}
    if task.name == "segmentation":
        extra["roi_size"] = ctx.config.finetune.roi_size or ctx.config.data.preprocessing.get(
            "patch_size"
        )
    metrics = task.evaluate(
        model.to(device), ctx, scored_holdout(ctx), progress=run_label(ctx, run, "evaluate"),
        **extra,
    )
    names = card.label_map or {}
    # The hold-out size is in the report header, not a metric.
    named = {named_metric(m, names): v for m, v in metrics.items() if m != "n"}
    atomic_write_json(path, named)
    ctx.state.mark_done(f"evaluate:{run.folder.name}")
    return named


def summarise(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean over the repeats that gave a value, with the sample standard deviation and the
    values themselves when there is more than one repeat."""
    finite = [float(v) for v in values if v is not None and v == v]
    mean = float(np.mean(finite)) if finite else float("nan")
    if len(values) < 2:
        return {"value": mean}
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
    return {"value": mean, "std": std, "runs": [None if v != v else v for v in values]}


def evaluate(ctx: RunContext) -> None:
    task = task_of(ctx)
    classes = num_classes(ctx)
    groups: dict[str, list[FinetuneRun]] = {}
    for run in finetune_runs(ctx):
        groups.setdefault(run.group, []).append(run)
    for group, runs in groups.items():
        key = f"evaluate-summary:{group}"
        if ctx.state.is_done(key):
            continue
        per_run = [_holdout_metrics(ctx, task, classes, run) for run in runs]
        rows = []
        for metric in per_run[0]:
            stats = summarise([m.get(metric) for m in per_run])
            row = ctx.row(
                "finetune", init_label(ctx, runs[0].init), budget_label(runs[0].budget),
                metric, stats.pop("value"),
            )
            rows.append({**row, **stats})
        print_rows(rows)
        ctx.state.mark_done(key, rows)
