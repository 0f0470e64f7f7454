"""Tests of the fine-tuning stage: the validation split carved from the labelled subset, the
frozen-encoder warm-up, checkpoint selection on validation, and repeats reported as mean/std."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from medssl.modalities.base import Record
from medssl.pipelines.finetune import FreezeEncoder, SelectOnValidation, summarise
from medssl.pipelines.runner import run
from medssl.pipelines.splits import split_validation
from medssl.pipelines.tasks.classification import ClassificationTask
from medssl.pipelines.tasks.pretrained import selected_parameter_names
from medssl.platform.batch import collate_items
from medssl.platform.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent / "tasks"))
from tiny_encoders import TinyUNet  # noqa: E402


def _records(n_subjects: int, scans: int = 2) -> list[Record]:
    return [
        Record(subject_id=f"s{s:02d}", image=f"s{s:02d}_{k}.nii.gz", label=s % 2)
        for s in range(n_subjects)
        for k in range(scans)
    ]


# ----------------------------------------------------------------------------- validation split


@pytest.mark.parametrize("seed", range(4))
def test_validation_split_is_by_subject_inside_the_labelled_subset(seed: int) -> None:
    records = _records(20)
    labelled = list(range(4, 36))  # subjects 2..17
    train, val = split_validation(records, labelled, 0.25, seed)
    assert sorted(train + val) == labelled
    subjects = lambda idx: {records[i].subject_id for i in idx}  # noqa: E731
    assert not subjects(train) & subjects(val)
    assert len(subjects(val)) == 4  # a quarter of the 16 labelled subjects
    assert {records[i].label for i in val} == {0, 1}  # stratified by class
    assert split_validation(records, labelled, 0.25, seed) == (train, val)


def test_validation_split_needs_two_labelled_subjects() -> None:
    with pytest.raises(ConfigError, match="finetune.validation_fraction"):
        split_validation(_records(3), [0, 1], 0.5, 0)


# ----------------------------------------------------------------------------- repeats


def test_summarise_repeats() -> None:
    assert summarise([0.5]) == {"value": 0.5}
    stats = summarise([0.7, 0.8, 0.9])
    assert stats["value"] == pytest.approx(0.8)
    assert stats["std"] == pytest.approx(np.std([0.7, 0.8, 0.9], ddof=1))
    assert stats["runs"] == [0.7, 0.8, 0.9]
    # A failed repeat (None/NaN) is listed but does not enter the mean.
    stats = summarise([0.6, None, float("nan"), 0.8])
    assert stats["value"] == pytest.approx(0.7)
    assert stats["runs"] == [0.6, None, None, 0.8]


# ----------------------------------------------------------------------------- callbacks


def _scans(n: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [
        {"x": torch.randn(1, 8, 8, 8, generator=gen) + (i % 2), "label": torch.tensor(i % 2)}
        for i in range(n)
    ]


def _fit(callbacks: list, steps: int, tmp_path: Path) -> tuple[torch.nn.Module, dict, dict]:
    torch.manual_seed(0)
    task = ClassificationTask()
    model = task.build_model(TinyUNet(), num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(_scans(16), batch_size=4, shuffle=True, collate_fn=collate_items)
    module = task.module(model, lr=1e-2, total_steps=steps)
    trainer = L.Trainer(
        max_steps=steps, callbacks=callbacks, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(module, loader)
    return model, before, model.state_dict()


def test_freeze_encoder_keeps_the_encoder_half_then_releases_it(tmp_path: Path) -> None:
    names = selected_parameter_names(TinyUNet(), prefix="encoder.")
    assert names == {"encoder.stem.0.weight", "encoder.stem.0.bias",
                     "encoder.down.0.weight", "encoder.down.0.bias"}
    _, before, after = _fit([FreezeEncoder(names, steps=100)], 5, tmp_path)
    assert all(torch.equal(before[k], after[k]) for k in names)  # the frozen half
    assert not torch.equal(before["head.weight"], after["head.weight"])  # the head trains
    _, before, after = _fit([FreezeEncoder(names, steps=2)], 5, tmp_path)
    assert not torch.equal(before["encoder.stem.0.weight"], after["encoder.stem.0.weight"])


def test_selection_keeps_the_best_scoring_checkpoint(tmp_path: Path) -> None:
    scores = iter([0.9, 0.4, 0.6, 0.5, 0.7])  # lower is better: step 4 (0.4) wins
    seen: list[dict[str, torch.Tensor]] = []

    def score(model: torch.nn.Module) -> float:
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    card = {"architecture": {"encoder": "tiny_unet", "spatial_dims": 3, "in_channels": 1}}
    best = tmp_path / "best"
    callback = SelectOnValidation(score, "log_loss", False, 2, best, card)
    _fit([callback], 9, tmp_path)  # scored at steps 2, 4, 6, 8 and the last (9)
    assert len(seen) == 5
    saved = json.loads((best / "model.json").read_text())["selection"]
    assert saved == {"metric": "log_loss", "value": 0.4, "step": 4}
    from medssl.platform.checkpoint import load_model

    state, _ = load_model(best)
    assert all(torch.equal(state[k], seen[1][k]) for k in state)
    # A resumed run reads the best so far back from the folder.
    assert SelectOnValidation(score, "log_loss", False, 2, best, card).best() == 0.4


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 volumes of 16^3 in the MedMNIST layout: a bright blob whose size is the label."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"))
    images, labels = [], []
    for i in range(24):
        centre = rng.uniform(5, 11, size=3)[:, None, None, None]
        blob = (((grid - centre) ** 2).sum(0) < (3.0 if i % 2 else 5.0) ** 2).astype(np.float32)
        images.append(np.clip(blob * 200 + rng.normal(30, 10, (16, 16, 16)), 0, 255))
        labels.append([i % 2])
    path = tmp_path_factory.mktemp("npz") / "tiny3d.npz"
    np.savez(path, train_images=np.asarray(images, np.uint8), train_labels=np.asarray(labels, np.uint8))
    return path


def test_repeated_selected_finetuning_reports_mean_and_spread(tmp_path: Path, tiny_npz: Path) -> None:
    config = {
        "name": "tiny-ft",
        "stages": ["finetune", "evaluate", "report"],
        "data": {"path": str(tiny_npz), "cache_dir": str(tmp_path / "cache"), "holdout_fraction": 0.25},
        "encoder": {"name": "resnet", "kwargs": {"depth": 10, "widen_factor": 0.125}},
        "finetune": {
            "task": "classification", "label_budgets": [1.0], "inits": ["scratch"],
            "batch_size": 4, "max_steps": 4, "lr": 0.001, "validation_fraction": 0.25,
            "eval_every_n_steps": 2, "freeze_encoder_steps": 1, "repeats": 2,
        },
        "trainer": {"progress_bar": False},
    }
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(config))
    report = run(path, out=tmp_path / "run")
    rows = [r for r in report["results"] if r["stage"] == "finetune"]
    assert {r["metric"] for r in rows} == {"auroc", "accuracy", "balanced_accuracy"}
    for r in rows:
        assert len(r["runs"]) == 2 and r["std"] is not None
        finite = [v for v in r["runs"] if v is not None]
        assert r["value"] == pytest.approx(float(np.mean(finite)))
    for repeat in (0, 1):
        folder = tmp_path / "run" / "finetune" / f"scratch-100pct-r{repeat}"
        card = json.loads((folder / "best" / "model.json").read_text())
        assert card["selection"]["metric"] == "log_loss" and card["seed"] == repeat
        assert card["validation_scans"] + card["training_scans"] == card["labelled_scans"]
        assert json.loads((folder / "holdout_metrics.json").read_text()).keys() == {
            "auroc", "accuracy", "balanced_accuracy"
        }
    assert "±" in (tmp_path / "run" / "report.md").read_text()


def test_finetuning_and_evaluation_print_progress_lines(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off a terminal every step of a fine-tune and every batch scored are reported (the
    printer's period set to 0 here; 5 s in a run), named after the sub-run."""
    from medssl.platform.engine import progress

    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)
    config = {
        "name": "tiny-progress",
        "stages": ["finetune", "evaluate"],
        "data": {"path": str(tiny_npz), "cache_dir": str(tmp_path / "cache"), "holdout_fraction": 0.25},
        "encoder": {"name": "resnet", "kwargs": {"depth": 10, "widen_factor": 0.125}},
        "finetune": {
            "task": "classification", "label_budgets": [1.0], "inits": ["scratch"],
            "batch_size": 4, "max_steps": 3, "lr": 0.001,
        },
    }
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(config))
    run(path, out=tmp_path / "run")
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if line.startswith("[finetune scratch 100%] step")]
    assert [line.split(" loss")[0] for line in steps] == [
        f"[finetune scratch 100%] step {k}/3" for k in (1, 2, 3)
    ]
    assert "left)" in steps[0] and steps[-1].endswith("s)")
    assert any(line.startswith("[evaluate scratch 100%] batch 1/1") for line in lines)
