"""The user guide's local-language-model example, run as written (on a tiny BERT standing in
for the clinical model folder, with fewer steps and smaller towers)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from medssl.pipelines.report_pairing import build_report_pairing

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
TITLE = "#### A pretrained language model from a local folder"
FAST = [
    "pretrain.max_steps=2",
    "pretrain.batch_size=16",
    "pretrain.method.projection_dim=16",
    "pretrain.method.hidden_dim=32",
    "encoder.kwargs.widen_factor=0.125",
    "probe.label_budgets=[0.2]",
    "probe.inits=[pretrained]",
    "trainer.progress_bar=false",
]


@pytest.mark.slow
@pytest.mark.integration
def test_local_language_model_example_runs_as_written(
    shared_data: Path, tiny_language_model: Path, tmp_path: Path, medssl_cli
) -> None:
    text = GUIDE.read_text()
    section = text[text.index(TITLE):]
    following = re.search(r"^#{2,4} ", section[len(TITLE):], flags=re.M)
    section = section[: len(TITLE) + following.start()] if following else section
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    command = shlex.split(block.replace("\\\n", " "))
    assert command[:3] == ["medssl", "run", "xray-report-convirt"]

    shutil.copytree(tiny_language_model, tmp_path / "models" / "clinical-bert")
    build_report_pairing(
        shared_data / "image2d/medmnist/pneumoniamnist_trainsplit.npz",
        shared_data / "image2d/cxr/NLMCXR_reports.tgz",
        tmp_path / "pairing",
        max_pairs=100,
    )
    result = medssl_cli(*command[1:], *FAST, "--out", "runs/lm", cwd=tmp_path)
    assert result.returncode == 0, f"the example failed:\n{result.stderr[-3000:]}"
    report = json.loads((tmp_path / "runs" / "lm" / "report.json").read_text())
    assert {"zeroshot", "retrieval"} <= {r["stage"] for r in report["results"]}
