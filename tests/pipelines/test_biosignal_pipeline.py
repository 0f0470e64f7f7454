"""Participant-level pretraining inside a run: the ECG preset end to end on the WFDB records
(tiny encoder, a few steps), pair batches from training segments only, and the probe rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medssl.pipelines.prepare import prepare_context
from medssl.pipelines.presets import resolve
from medssl.pipelines.runner import run_config
from medssl.platform.batch import SUBJECT_PAIRS, BatchSpec
from medssl.platform.config import load_config

pytestmark = pytest.mark.integration

TINY = [
    "encoder.kwargs={width: 0.25, depth: 0.25, feature_dim: 32}",
    "pretrain.max_steps=3",
    "pretrain.batch_size=16",
    "pretrain.method.hidden_dim=32",
    "probe.kinds=[linear]",
    "trainer.progress_bar=false",
]


def _config(shared_data: Path, tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(
        [resolve("ecg-participant")],
        [
            f"data.path={shared_data / 'physio' / 'wfdb'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            *TINY,
            *extra,
        ],
    )


def test_pair_batches_hold_two_training_segments_of_one_participant(
    shared_data: Path, tmp_path: Path
) -> None:
    config = _config(shared_data, tmp_path)
    ctx = prepare_context(config, tmp_path / "run")
    spec = BatchSpec(SUBJECT_PAIRS, frozenset({"index", "subject"}))
    loader = ctx.pretrain_loader("participant", spec, 16)
    train = set(ctx.train)
    for k, batch in zip(range(3), loader, strict=False):
        subject, index = batch["subject"], batch["index"]
        assert len(subject) == 16
        assert (subject[0::2] == subject[1::2]).all() and (index[0::2] != index[1::2]).all()
        # `index` is the position in the prepared data: only training segments are served.
        assert {int(i) for i in index} <= train, k
        assert all(ctx.records[int(i)].split == "train" for i in index)


def test_ecg_preset_runs_and_reports_both_inits(shared_data: Path, tmp_path: Path) -> None:
    report = run_config(_config(shared_data, tmp_path), tmp_path / "run")
    rows = [r for r in report["results"] if r["stage"] == "probe/linear" and r["metric"] == "auroc"]
    assert {r["init"] for r in rows} == {"participant", "random"}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
    card = json.loads((tmp_path / "run" / "pretrain" / "model.json").read_text())
    assert card["method"]["name"] == "participant" and card["preprocessing"]["fs"] == 128


def _write_cohort(folder: Path, participants: int) -> Path:
    """npz recordings of sine 'heart beats' at a per-participant rate, two recordings each,
    and a manifest with the rate in beats per minute as a continuous label."""
    rng = np.random.default_rng(0)
    rows = ["subject_id,record,label,fs"]
    for p in range(participants):
        bpm = 50.0 + 7.3 * p
        for k in range(2):
            t = np.arange(0, 40, 1 / 100)
            ecg = np.sin(2 * np.pi * bpm / 60 * t) ** 21 + 0.05 * rng.standard_normal(len(t))
            np.savez(folder / f"p{p}_{k}.npz", ecg=ecg)
            rows.append(f"p{p},p{p}_{k}.npz,{bpm},100")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def test_continuous_labels_give_regression_probes_split_by_participant(tmp_path: Path) -> None:
    manifest = _write_cohort(tmp_path, participants=10)
    config = load_config(
        [resolve("ecg-participant")],
        [
            f"data.path={manifest}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.preprocessing.leads=[ecg]",
            "data.preprocessing.beats=null",
            "data.preprocessing.split_by_time=null",
            "data.preprocessing.window_seconds=4.0",
            "data.preprocessing.stride_seconds=4.0",
            "data.holdout_fraction=0.3",
            "probe.kinds=[linear, knn]",
            *TINY[:4],
            "trainer.progress_bar=false",
        ],
    )
    ctx = prepare_context(config, tmp_path / "run")
    held = {ctx.records[i].subject_id for i in ctx.holdout}
    assert held and held.isdisjoint({ctx.records[i].subject_id for i in ctx.train})
    report = run_config(config, tmp_path / "run")
    rows = {(r["stage"], r["init"], r["metric"]) for r in report["results"]}
    for stage in ("probe/linear", "probe/knn"):
        for init in ("participant", "random"):
            assert (stage, init, "mae") in rows and (stage, init, "r2") in rows
    assert not any(r["metric"] == "auroc" for r in report["results"])
