"""The ConVIRT preset with a local pretrained language model as the text tower, end to end on
the real reports: the reports are tokenised by the model folder's tokenizer, only the LoRA
adapters and projectors are saved (with the tokenizer bundle), and a later run re-probes to
the same numbers, refusing base weights other than the ones the card names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from medssl.pipelines.presets import resolve
from medssl.pipelines.report_pairing import build_report_pairing
from medssl.pipelines.runner import run
from medssl.platform.errors import CheckpointError

#: A tiny pretraining with the pretrained text tower (r 4 on a width-32 BERT).
FAST = [
    "pretrain.max_steps=3",
    "pretrain.batch_size=16",
    "pretrain.method.text_encoder={model: pretrained, lora_rank: 4}",
    "pretrain.method.projection_dim=16",
    "pretrain.method.hidden_dim=32",
    "data.preprocessing.text.max_tokens=64",
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
        max_pairs=120,
    )
    return out / "manifest.csv"


@pytest.mark.slow
@pytest.mark.integration
def test_convirt_with_a_local_language_model(
    pairing: Path, tiny_language_model: Path, tmp_path: Path
) -> None:
    model = shutil.copytree(tiny_language_model, tmp_path / "clinical-lm")
    data = [f"data.path={pairing}", f"data.preprocessing.text.model={model}"]
    out = tmp_path / "run"
    report = run([resolve("xray-report-convirt")], [*data, *FAST], out=out)
    rows = {(r["stage"], r["init"], r["metric"]) for r in report["results"]}
    assert ("zeroshot", "convirt", "auroc") in rows
    assert ("retrieval", "convirt", "R@1 image->text") in rows
    assert ("zeroshot", "random", "auroc") in rows

    joint = out / "pretrain" / "joint"
    card = json.loads((joint / "model.json").read_text())
    assert card["architecture"]["encoder"] == "pretrained_text"
    assert card["architecture"]["kwargs"]["folder"] == str(model.resolve())
    assert json.loads((joint / "tokenizer.json").read_text())["format"].startswith("medssl.")
    with safe_open(str(joint / "model.safetensors"), framework="pt") as saved:
        text_keys = [k for k in saved.keys() if k.startswith("text_encoder.")]  # noqa: SIM118
    assert text_keys and all("lora_" in k for k in text_keys)  # the frozen base stays out

    # A later run probes the saved model to the same numbers ...
    again = [f"pretrain.from_checkpoint={out / 'pretrain'}", "stages=[probe]", "probe.inits=[pretrained]"]
    reprobe = run([resolve("xray-report-convirt")], [*data, *FAST, *again], out=tmp_path / "ok")
    first = {(r["metric"], r["value"]) for r in report["results"] if r["stage"] == "zeroshot" and r["init"] == "convirt"}
    assert {(r["metric"], r["value"]) for r in reprobe["results"] if r["stage"] == "zeroshot"} == first
    # ... and refuses other base weights in that folder, naming the key to fix.
    other = model / "other"
    shutil.copytree(tiny_language_model, other)
    shutil.copyfile(_reinitialised(other), model / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"base weights with sha256.*data\.preprocessing\.text\.model"):
        run([resolve("xray-report-convirt")], [*data, *FAST, *again], out=tmp_path / "re")


def _reinitialised(folder: Path) -> Path:
    """The weights file of the model in `folder` re-saved from another random init."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    torch.manual_seed(1)
    transformers.BertModel(config).save_pretrained(folder)
    return folder / "model.safetensors"
