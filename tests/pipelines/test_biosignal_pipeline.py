"""Participant-level pretraining inside a run: the ECG preset end to end on the WFDB records
(tiny encoder, a few steps), pair batches from training segments only, and the probe rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medssl.pipelines.presets import resolve
from medssl.pipelines.runner import prepare_context, run_config
from medssl.pipelines.stages import pretrain_loader
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
    loader = pretrain_loader(ctx, frozenset({"index", "subject", "subject_pairs"}), 16)
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
