"""Image-report pretraining end to end on the real reports: the shipped presets run, the joint
space is saved with its tokenizer and probed by zero-shot classification and retrieval, and a
model whose tokenizer went missing is refused with a message that says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medssl.pipelines.context import check_compatibility
from medssl.pipelines.joint import check_joint_probes
from medssl.pipelines.presets import resolve
from medssl.pipelines.report_pairing import build_report_pairing
from medssl.pipelines.runner import run
from medssl.platform.config import load_config
from medssl.platform.errors import CheckpointError, ConfigError

#: A small, fast version of the presets: a tiny pretraining, one probe budget.
FAST = [
    "pretrain.max_steps=3",
    "pretrain.batch_size=16",
    "pretrain.method.text_encoder.width=32",
    "pretrain.method.text_encoder.depth=1",
    "pretrain.method.text_encoder.heads=2",
    "pretrain.method.projection_dim=16",
    "pretrain.method.hidden_dim=32",
    "encoder.kwargs.widen_factor=0.125",
    "probe.label_budgets=[0.2]",
    "probe.batch_size=64",
    "trainer.progress_bar=false",
]


@pytest.fixture(scope="module")
def pairing(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pairing")
    build_report_pairing(
        shared_data / "image2d/medmnist/pneumoniamnist_trainsplit.npz",
        shared_data / "image2d/cxr/NLMCXR_reports.tgz",
        out,
        ecg_source=shared_data / "physio/wfdb/100",
        max_pairs=160,
    )
    return out / "manifest.csv"


@pytest.mark.slow
@pytest.mark.integration
def test_convirt_preset_saves_and_probes_the_joint_space(pairing: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = run(
        [resolve("xray-report-convirt")],
        [f"data.path={pairing}", f"data.cache_dir={tmp_path / 'cache'}", *FAST],
        out=out,
    )
    rows = {(r["stage"], r["init"], r["metric"]) for r in report["results"]}
    for init in ("convirt", "random"):
        assert ("zeroshot", init, "auroc") in rows
        assert ("retrieval", init, "R@1 image->text") in rows
        assert ("retrieval", init, "R@10 text->image") in rows
        assert ("probe/linear", init, "auroc") in rows
    assert "plots/joint_space.png" in report["plots"] and (out / "plots" / "joint_space.png").is_file()
    card = json.loads((out / "pretrain" / "joint" / "model.json").read_text())
    assert card["tokenizer"]["file"] == "tokenizer.json"
    assert (out / "pretrain" / "joint" / "tokenizer.json").is_file()
    assert card["method"]["facts"]["max_tokens"] == 96

    # A later run probes the saved model with the tokenizer its card names ...
    again = [f"pretrain.from_checkpoint={out / 'pretrain'}", "stages=[probe]", "probe.inits=[pretrained]"]
    reprobe = run([resolve("xray-report-convirt")], [f"data.path={pairing}", *FAST, *again], out=tmp_path / "ok")
    first = {(r["metric"], r["value"]) for r in report["results"] if r["stage"] == "zeroshot" and r["init"] == "convirt"}
    assert {(r["metric"], r["value"]) for r in reprobe["results"] if r["stage"] == "zeroshot"} == first
    # ... and refuses it, naming the file, once that tokenizer is gone.
    (out / "pretrain" / "joint" / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is missing.*travel|copy it back"):
        run([resolve("xray-report-convirt")], [f"data.path={pairing}", *FAST, *again], out=tmp_path / "re")


@pytest.mark.slow
@pytest.mark.integration
def test_more_preset_runs_on_synthetic_triplets(pairing: Path, tmp_path: Path) -> None:
    ecg = [f"pretrain.method.ecg_encoder.{k}={v}" for k, v in (("width", 16), ("depth", 1), ("heads", 2))]
    report = run(
        [resolve("xray-ecg-report-more")],
        [f"data.path={pairing}", f"data.cache_dir={tmp_path / 'cache'}", *FAST, *ecg],
        out=tmp_path / "run",
    )
    assert {"zeroshot", "retrieval", "probe/linear"} <= {r["stage"] for r in report["results"]}
    assert (tmp_path / "run" / "pretrain" / "joint" / "model.json").is_file()


def test_text_probes_need_a_method_that_embeds_text() -> None:
    config = load_config(
        [resolve("xray-simclr")],
        ["data.path=nowhere.csv", "probe.kinds=[linear,zeroshot]", "probe.prompts={0:[a],1:[b]}"],
    )
    with pytest.raises(ConfigError, match=r"probe\.kinds.*zeroshot.*convirt.*simclr"):
        check_joint_probes(config)


def test_convirt_without_report_text_is_refused_before_any_data_is_read() -> None:
    config = load_config([resolve("xray-report-convirt")], ["data.path=nowhere.csv", "data.preprocessing.text=null"])
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.text"):
        check_compatibility(config)


def test_zeroshot_needs_prompts_for_each_class_in_order() -> None:
    with pytest.raises(ConfigError, match=r"probe.*prompts"):
        load_config([resolve("xray-report-convirt")], ["data.path=x.csv", "probe.prompts={1:[a],2:[b]}"])
