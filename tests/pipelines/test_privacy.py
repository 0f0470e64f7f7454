"""A tiny end-to-end run on phantoms whose DICOM series carries a patient name and id: neither
may reach the console, the logs, or any file the run writes (cards, reports, caches, events)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
import pytest

from medssl.pipelines.runner import run_config
from medssl.platform.config import PipelineConfig, load_config
from medssl.synthetic import PATIENT_NAME, write_cohort

pytestmark = pytest.mark.slow

#: write_cohort numbers the DICOM subjects' PatientID from 1.
PATIENT_ID = "PHANTOM-0001"
ROW_KEYS = {"dataset", "stage", "init", "label_budget", "metric", "value"}


def identifiers() -> list[str]:
    return sorted({PATIENT_NAME, PATIENT_ID, *PATIENT_NAME.split("^")}, key=len, reverse=True)


def tiny_config(manifest: Path) -> PipelineConfig:
    return load_config(None, [
        "name=privacy",
        f"data.path={manifest}",
        "stages=[pretrain, finetune, evaluate, report]",
        "data.holdout_fraction=0.25",
        "data.preprocessing={spacing: [3, 3, 4], patch_size: [32, 32, 16], "
        "intensity: hu_window, hu_window: [-200, 300]}",
        "encoder.name=unet",
        "encoder.kwargs={features: [4, 8, 8, 8, 8, 4], norm: batch}",
        "pretrain.max_steps=2",
        "pretrain.batch_size=2",
        "finetune.max_steps=2",
        "finetune.batch_size=2",
        "finetune.label_budgets=[1]",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
    ])


def leaks(blob: bytes) -> list[str]:
    found = []
    for text in identifiers():
        for encoded in (text.encode("utf-8"), text.encode("utf-16-le")):
            if encoded in blob:
                found.append(text)
                break
    return found


def test_patient_identity_never_leaves_the_dicom_files(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    manifest = write_cohort(tmp_path / "data", n_subjects=4, dicom_subjects=1)
    first_slice = next((tmp_path / "data" / "dicom").rglob("*.dcm"))
    ds = pydicom.dcmread(first_slice)
    # The identity really is in the input, so the searches below can find a leak.
    assert str(ds.PatientName) == PATIENT_NAME and ds.PatientID == PATIENT_ID
    assert leaks(first_slice.read_bytes())

    caplog.set_level(logging.DEBUG, logger="medssl")
    run_dir = tmp_path / "run"
    report = run_config(tiny_config(manifest), run_dir)
    out, err = capfd.readouterr()

    assert "== finetune ==" in out  # the capture did see the run's console output
    for stream, text in (("stdout", out), ("stderr", err), ("log", caplog.text)):
        assert not leaks(text.encode()), f"{leaks(text.encode())} printed to {stream}"
    assert not leaks(json.dumps(report).encode())

    cache = tmp_path / ".cache"
    files = [p for folder in (run_dir, cache) for p in folder.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    for expected in ("config.yaml", "state.json", "report.json", "report.md", "model.json",
                     "metrics.csv"):
        assert expected in names, f"{expected} missing from the run folder"
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert any(n.startswith("index-") and n.endswith(".json") for n in names)
    for path in files:
        found = leaks(path.read_bytes())
        assert not found, f"{found} written into {path.relative_to(tmp_path)}"

    assert (run_dir / "pretrain" / "model.json").is_file()
    saved = json.loads((run_dir / "report.json").read_text())
    assert saved["results"], "the report holds no result rows"
    for row in saved["results"]:
        assert set(row) == ROW_KEYS, row
        assert row["init"] in {"simclr", "scratch"}
        assert row["label_budget"] == "1"
    assert {r["init"] for r in saved["results"]} == {"simclr", "scratch"}
