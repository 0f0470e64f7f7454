"""The stages of a run: pretrain, probe, finetune, evaluate (report lives in report.py).

Each stage reads what earlier stages left in the run folder, writes its own outputs, and
records itself (and each sub-run) as done so that a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from medssl.pipelines import protocols
from medssl.pipelines.context import RunContext, method_settings, phase_folder, phase_key
from medssl.pipelines.joint import JOINT_KINDS, joint_rows, save_joint
from medssl.pipelines.splits import budget_label, label_subset
from medssl.platform.checkpoint import load_model, require_contract, save_model
from medssl.platform.encoders import Encoder, architecture_of
from medssl.platform.engine.distributed import barrier
from medssl.platform.engine.pretrain import PretrainModule
from medssl.platform.engine.records import RECORDS_FILE, TrainingRecords
from medssl.platform.engine.trainer import build_trainer, last_checkpoint, launch_world
from medssl.platform.errors import CheckpointError, ConfigError, DataError
from medssl.platform.evaluation.features import extract_features, pool_per_scan
from medssl.platform.evaluation.probes import (
    knn_probe,
    knn_regression_probe,
    linear_probe,
    ridge_probe,
)
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
    """Every phase of `pretrain` (the section itself, then `pretrain.then`) trains the same
    encoder in turn; the last one's weights go to `pretrain/`, with a card that lists the
    tensors pretraining changed (`initialises`), so fine-tuning copies exactly those."""
    out = ctx.run_dir / "pretrain"
    if ctx.state.is_done("pretrain") and (out / "model.safetensors").is_file():
        log.info("pretrain: already done in %s", out)
        return
    L.seed_everything(ctx.config.seed, workers=True, verbose=False)
    encoder = ctx.build_encoder()
    initial = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    phases = ctx.config.pretrain.phases()
    cards, steps, seconds = [], 0, 0.0
    trained = None  # the last phase's method, when this attempt trained it
    for k in range(len(phases)):
        folder = phase_folder(ctx.run_dir, ctx.config, k)
        key = "pretrain" if len(phases) == 1 else f"pretrain:{k + 1}"
        if ctx.state.is_done(key) and (folder / "model.safetensors").is_file():
            state, card = load_model(folder)
            encoder.load_state_dict(state)
            cards.append(card.method)
            steps += int(getattr(card, "steps", 0) or 0)
            seconds += float(getattr(card, "seconds", 0.0) or 0.0)
            continue
        started = time.perf_counter()
        method, done_steps = _train_phase(ctx, encoder, k, folder)
        trained = method if k == len(phases) - 1 else None
        took = time.perf_counter() - started
        cards.append(method.card())
        steps, seconds = steps + done_steps, seconds + took
        if len(phases) > 1:
            if launch_world()[0] == 0:
                card = _pretrain_card(ctx, encoder, method.card(), (done_steps, took), initial)
                save_model(folder, encoder.state_dict(), card)
            ctx.state.mark_done(key)
    if launch_world()[0] == 0:
        method_card = cards[0] if len(cards) == 1 else {"name": ctx.method_name, "phases": cards}
        card = _pretrain_card(ctx, encoder, method_card, (steps, seconds), initial)
        save_model(out, encoder.state_dict(), card)
        if trained is not None:
            save_joint(ctx, out, trained)
    barrier()  # later stages on every rank read what rank 0 just wrote
    ctx.state.mark_done("pretrain")


def _pretrain_card(
    ctx: RunContext,
    encoder: Encoder,
    method: dict[str, Any],
    work: tuple[int, float],
    initial: dict[str, torch.Tensor],
) -> dict[str, Any]:
    """The card of pretrained weights: `steps` and `seconds` of training (this attempt's
    wall time; a resumed attempt counts from where it resumed) and the changed tensors."""
    card = base_card(ctx, encoder)
    changed = [k for k, v in encoder.state_dict().items() if not torch.equal(v, initial[k])]
    card.update(
        method=method,
        stage="pretrain",
        steps=work[0],
        seconds=round(work[1], 1),
        initialises=changed,
    )
    return card


def _train_phase(ctx: RunContext, encoder: Encoder, phase: int, folder: Path) -> tuple[Any, int]:
    cfg = ctx.config.pretrain.phases()[phase]
    cls, settings = method_settings(ctx.config, phase)
    # Each phase seeds its own heads, so a resumed phase k starts as it did the first time.
    L.seed_everything(ctx.config.seed + phase, workers=True, verbose=False)
    try:
        method = cls.build(encoder, settings, ctx.facts)
    except ConfigError:
        raise  # already names its key
    except ValueError as exc:  # the method cannot train this encoder (settings are valid)
        raise ConfigError(f"{phase_key(phase)}.name: {exc}; or change encoder.name") from None
    loader = ctx.pretrain_loader(cls.name, cls.batch_spec(method.config), cfg.batch_size)
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
        root_dir=folder,
        label=f"pretrain {cls.name}",
        max_epochs=epochs,
        max_steps=cfg.max_steps,
        checkpoint_every_n_steps=cfg.checkpoint_every_n_steps,  # type: ignore[attr-defined]
        extra_callbacks=[TrainingRecords(folder / RECORDS_FILE)],
    )
    resume = last_checkpoint(folder)
    if resume is not None:
        print(f"[pretrain] resuming from {resume.relative_to(ctx.run_dir)}", flush=True)
    try:
        trainer.fit(module, loader, ckpt_path=resume)
    except FloatingPointError as exc:  # a diverged loss: the phase's lr is the usual cause
        lr_key = "pretrain.lr" if phase == 0 else f"pretrain.then.{phase - 1}.lr"
        raise ConfigError(f"{lr_key} {cfg.lr}: {exc}") from None
    averaged = method.inference_encoder()
    if averaged is not encoder:  # e.g. the SWA copy TS2Vec and AutoTCL evaluate with
        encoder.load_state_dict(averaged.state_dict())
    for parameter in encoder.parameters():  # a phase may freeze parts; the next one decides
        parameter.requires_grad_(True)
    return method, int(trainer.global_step)


def load_pretrained_encoder(ctx: RunContext) -> Encoder:
    """A fresh encoder with the pretrained weights, after checking the card's contract."""
    return load_pretrained(ctx)[0]


def pretrained_folder(ctx: RunContext, init: str = "pretrained") -> Path:
    """Where the weights of an init live: the pretraining's final model, or for `phase<k>`
    the snapshot after the first k phases of a stage-wise pretraining."""
    folder = ctx.pretrained_dir()
    phases = ctx.config.pretrain.phases()
    if init == "pretrained" or int(init[5:]) == len(phases):
        return folder
    k = int(init[5:])
    if k > len(phases):
        raise ConfigError(
            f"finetune.inits: '{init}' asks for phase {k} but pretraining has {len(phases)} "
            f"phase(s); use phase1..phase{len(phases)} or pretrained"
        )
    return folder / f"phase{k}-{phases[k - 1].method['name']}"  # type: ignore[attr-defined]


def load_pretrained(ctx: RunContext, init: str = "pretrained") -> tuple[Encoder, list[str] | None]:
    """(encoder with the weights of `init`, the tensor names pretraining changed or None for
    cards that do not say), after checking the card's contract."""
    folder = pretrained_folder(ctx, init)
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
    return encoder, getattr(card, "initialises", None)


def init_label(ctx: RunContext, init: str) -> str:
    """How an initialisation is named in reports: the pretraining's label (the method's name
    by default) for pretrained weights, the first k phases' labels for `phase<k>`."""
    if init == "pretrained":
        return ctx.method_name
    if init.startswith("phase"):
        return ctx.config.pretrain.init_label(int(init[5:]))
    return init


# ----------------------------------------------------------------------------- probe


def _features(
    ctx: RunContext, encoder: Encoder, indices: list[int], label: str
) -> tuple[np.ndarray, np.ndarray]:
    """One feature vector and label per scan (progress lines under `label`); a 2-D encoder's
    slice features are averaged over each volume's slices."""
    loader = ctx.loader(indices, "classification", ctx.config.probe.batch_size)
    feats, labels, _ = extract_features(encoder, loader, progress=label)
    if not ctx.modality.serves_parts:
        return feats, labels
    return pool_per_scan(feats, labels, loader.dataset.volume_of_items())  # type: ignore[attr-defined]


def probe(ctx: RunContext) -> None:
    """Frozen-encoder probes per init: linear / kNN / SVM (`protocols.svm_probe`) on global
    features of the training scans vs the hold-out at each label budget, and the forecast
    protocol (`protocols.forecast_probe`), which needs no labels."""
    cfg = ctx.config.probe
    labelled = [k for k in cfg.kinds if k in protocols.LABELLED_KINDS]
    # Unlabelled scans may join pretraining; probes fit and score only the labelled ones.
    train = [i for i in ctx.train if ctx.records[i].label is not None]
    holdout = [i for i in ctx.holdout if ctx.records[i].label is not None]
    if labelled and not (train and holdout):
        raise DataError(
            f"{ctx.config.data.path}: probing needs class labels on training and held-out "
            "scans; add a 'label' column to the manifest or drop 'probe' from stages"
        )
    for init in cfg.inits:
        key = f"probe:{init}"
        if ctx.state.is_done(key):
            continue
        L.seed_everything(ctx.config.seed, verbose=False)
        encoder = load_pretrained_encoder(ctx) if init == "pretrained" else ctx.build_encoder()
        rows = []
        if labelled:
            train_x, train_y = _features(ctx, encoder, train, f"probe {init}: training scans")
            test_x, test_y = _features(ctx, encoder, holdout, f"probe {init}: held-out scans")
            position = {idx: k for k, idx in enumerate(train)}
        for budget in cfg.label_budgets if labelled else []:
            regression = is_regression(
                cfg.target, train_y, getattr(ctx.prepared, "integer_labels", True)
            )
            subset = label_subset(
                ctx.records, train, budget, ctx.config.seed, stratify=not regression
            )
            chosen = [position[i] for i in subset]
            x, y = train_x[chosen], train_y[chosen]
            if not regression:
                check_probe_classes(ctx, budget, y, test_y)
            for kind in labelled:
                metrics = _probe_metrics(ctx, kind, regression, (x, y), (test_x, test_y))
                for metric, value in metrics.items():
                    rows.append(
                        ctx.row(
                            f"probe/{kind}",
                            init_label(ctx, init),
                            budget_label(budget),
                            metric,
                            value,
                        )
                    )
        if "forecast" in cfg.kinds:
            rows += protocols.forecast_probe(ctx, encoder, init_label(ctx, init))
        if set(JOINT_KINDS) & set(cfg.kinds):
            rows += joint_rows(ctx, init, encoder, init_label(ctx, init))
        print_rows(rows)
        ctx.state.mark_done(key, rows)


def check_probe_classes(
    ctx: RunContext, budget: int | float, train_y: np.ndarray, test_y: np.ndarray
) -> None:
    """DataError naming the dataset when a classification probe cannot be fitted: its labels
    hold a single class, or a held-out class has no training item at this budget."""
    seen, held = set(np.unique(train_y).tolist()), set(np.unique(test_y).tolist())
    if len(seen | held) < 2:
        raise DataError(
            f"{ctx.config.data.path}: every labelled item has class {sorted(seen | held)}, and a "
            "classification probe needs two or more; label items of another class, set "
            "probe.target=regression for a continuous target, or drop 'probe' from stages"
        )
    missing = sorted(held - seen)
    if missing:
        raise DataError(
            f"{ctx.config.data.path}: held-out class(es) {missing} have no training item at "
            f"label budget {budget_label(budget)}; put items of them in the training split or "
            "raise probe.label_budgets"
        )


#: Above this many distinct whole-number labels, `probe.target: auto` probes a regression.
MAX_AUTO_CLASSES = 20


def is_regression(target: str, labels: np.ndarray, whole: bool) -> bool:
    """Whether probes regress (MAE) rather than classify (AUROC): as `probe.target` says, or
    for `auto` when the labels are not whole numbers or take more than 20 values.

    Example:
        >>> is_regression("auto", np.arange(40), whole=True), is_regression("auto", np.r_[0, 1], True)
        (True, False)
    """
    if target != "auto":
        return target == "regression"
    return not whole or len(np.unique(labels)) > MAX_AUTO_CLASSES


def _probe_metrics(
    ctx: RunContext,
    kind: str,
    regression: bool,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> dict[str, float]:
    """One probe's scores: classification (AUROC, accuracy) or regression (MAE, RMSE, R^2),
    see `is_regression`."""
    cfg, seed = ctx.config.probe, ctx.config.seed
    if regression and kind == "svm":
        raise ConfigError(
            "probe.kinds: 'svm' classifies, but these labels are continuous; use linear "
            "(ridge) or knn"
        )
    if kind == "linear":
        if regression:
            return ridge_probe(*train, *test, seed=seed)
        return linear_probe(*train, *test, seed=seed)
    if kind == "svm":
        return protocols.svm_probe(*train, *test, seed=seed)
    if regression:
        return knn_regression_probe(*train, *test, k=cfg.knn_k)
    return knn_probe(*train, *test, k=cfg.knn_k)


def print_rows(rows: list[dict[str, Any]]) -> None:
    if launch_world()[0] != 0:
        return
    for r in rows:
        value = "n/a" if r["value"] is None else f"{r['value']:.4f}"
        print(
            f"  {r['stage']:<16} {r['init']:<10} {r['label_budget']:>6} {r['metric']:<18} {value}"
        )


# ----------------------------------------------------------------------------- finetune


def task_of(ctx: RunContext) -> Any:
    return TASKS.get(ctx.config.finetune.task)()


def num_classes(ctx: RunContext) -> int:
    """`data.num_classes`, else the largest label (or mask value) + 1; a set value that the
    labels exceed is a ConfigError (the loss would index past the model's outputs)."""
    if ctx.config.finetune.task == "classification":
        values = {ctx.records[i].label for i in ctx.train + ctx.holdout} - {None}
        if not values:
            raise DataError(
                f"{ctx.config.data.path}: classification needs a 'label' for the labelled scans"
            )
        largest = int(max(values))  # type: ignore[arg-type]
    else:
        largest = int(ctx.prepared.max_mask_label())
    wanted = ctx.config.data.num_classes
    if wanted and largest >= wanted:
        what = "label" if ctx.config.finetune.task == "classification" else "mask value"
        raise ConfigError(
            f"data.num_classes: {wanted} classes (0..{wanted - 1}) but {ctx.config.data.path} "
            f"has {what} {largest}; set it to {largest + 1} or more, or leave it unset"
        )
    return wanted or max(2, largest + 1)
