"""A tiny end-to-end run on DICOM radiographs whose headers carry a patient name and id:
neither may reach the console, the logs, errors, or any file the run writes (cards, reports,
caches, events)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PATIENT_ID, PATIENT_NAME, ramp

from medssl.pipelines.runner import run_config
from medssl.platform.config import load_config
from medssl.platform.errors import DataError

pytestmark = pytest.mark.slow


def identifiers() -> list[str]:
    return sorted({PATIENT_NAME, PATIENT_ID, *PATIENT_NAME.split("^")}, key=len, reverse=True)


def leaks(blob: bytes) -> list[str]:
    found = []
    for text in identifiers():
        if any(text.encode(codec) in blob for codec in ("utf-8", "utf-16-le")):
            found.append(text)
    return found


def dicom_cohort(root: Path, dicom_writer: Callable, n: int = 12) -> Path:
    """n labelled DICOM radiographs (half of them MONOCHROME1) and their manifest."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["subject_id,image,label"]
    for k in range(n):
        label = k % 2
        picture = ramp((24, 20), top=3000.0) + rng.normal(0, 50, (24, 20)) + 600 * label
        stored = np.clip(picture, 0, 4095).astype(np.uint16)
        photometric = "MONOCHROME1" if k % 3 == 0 else "MONOCHROME2"
        if photometric == "MONOCHROME1":
            stored = (4095 - stored).astype(np.uint16)
        dicom_writer(root / f"cxr{k:02d}.dcm", stored, photometric=photometric, window=(1800, 3600))
        rows.append(f"case{k:02d},cxr{k:02d}.dcm,{label}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_patient_identity_never_leaves_the_dicom_files(
    tmp_path: Path,
    dicom_writer: Callable,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    manifest = dicom_cohort(tmp_path / "data", dicom_writer)
    assert leaks((tmp_path / "data" / "cxr00.dcm").read_bytes())  # the identity is in the input
    config = load_config(
        None,
        [
            "name=image-privacy",
            "data.modality=image",
            f"data.path={manifest}",
            "data.holdout_fraction=0.34",
            "data.preprocessing={image_size: 16}",
            "stages=[pretrain, probe, finetune, evaluate, report]",
            "encoder.spatial_dims=2",
            "encoder.kwargs={depth: 10, widen_factor: 0.25, no_max_pool: true}",
            "pretrain.max_steps=2",
            "pretrain.batch_size=4",
            "probe.kinds=[linear]",
            "finetune.task=classification",
            "finetune.max_steps=2",
            "finetune.batch_size=4",
            "finetune.label_budgets=[4]",
            "trainer.accelerator=cpu",
            "trainer.log_every_n_steps=1",
        ],
    )
    caplog.set_level(logging.DEBUG, logger="medssl")
    run_dir = tmp_path / "run"
    report = run_config(config, run_dir)
    out, err = capfd.readouterr()
    assert "== finetune ==" in out
    for stream, text in (("stdout", out), ("stderr", err), ("log", caplog.text)):
        assert not leaks(text.encode()), f"{leaks(text.encode())} printed to {stream}"
    assert not leaks(json.dumps(report).encode())
    files = [p for p in (run_dir, tmp_path / ".cache") for p in p.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"model.json", "report.json", "report.md", "meta.json", "images.npy"} <= names
    for path in files:
        assert not leaks(path.read_bytes()), f"identity written into {path.relative_to(tmp_path)}"
    meta = json.loads(next((tmp_path / ".cache").rglob("meta.json")).read_text())
    assert {item["photometric"] for item in meta["items"]} == {"MONOCHROME1", "MONOCHROME2"}


def test_errors_about_dicom_files_name_no_patient(tmp_path: Path, dicom_writer: Callable) -> None:
    manifest = dicom_cohort(tmp_path / "data", dicom_writer, n=4)
    dicom_writer(tmp_path / "data" / "cxr01.dcm", np.zeros((2, 8, 8), np.uint16))  # multi-frame
    config = load_config(
        None,
        [
            "data.modality=image",
            f"data.path={manifest}",
            "encoder.spatial_dims=2",
            "stages=[pretrain]",
            "data.preprocessing={image_size: 16}",
        ],
    )
    with pytest.raises(DataError) as caught:
        run_config(config, tmp_path / "run")
    assert "multi-frame" in str(caught.value)
    assert not leaks(str(caught.value).encode())
    assert not (tmp_path / ".cache").exists()
