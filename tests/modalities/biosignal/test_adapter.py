"""The "biosignal" adapter on the real WFDB records: segments with participants, beat labels,
the causal split, the prepared cache, items, manifests, lead selection and `medssl validate`."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medssl.cli import app
from medssl.modalities.biosignal import BiosignalModality
from medssl.platform.batch import collate_items
from medssl.platform.errors import DataError

pytestmark = pytest.mark.integration

ECG = {
    "fs": 128,
    "leads": ["II|MLII|MCL1|ECG"],
    "window_seconds": 2.0,
    "stride_seconds": 2.0,
    "beats": {"annotation": "atr"},
    "split_by_time": [0.6, 0.0, 0.4],
}


@pytest.fixture(scope="module")
def wfdb_dir(shared_data: Path) -> Path:
    return shared_data / "physio" / "wfdb"


@pytest.fixture(scope="module")
def scanned(wfdb_dir: Path):  # type: ignore[no-untyped-def]
    modality = BiosignalModality(ECG)
    return modality, modality.scan(wfdb_dir)


def test_segments_carry_participants_beats_and_a_causal_split(scanned) -> None:  # type: ignore[no-untyped-def]
    _, records = scanned
    assert {r.subject_id for r in records} == {"100", "s0010_re", "a103l", "v102s", "03700181"}
    beats = [r for r in records if r.subject_id == "100"]
    counts = Counter((r.split, r.label) for r in beats)
    # 33 A + 1 V beats in record 100; at most a few are lost at the split boundary and edges.
    assert 30 <= counts["train", 1] + counts["test", 1] <= 34
    assert counts["train", 0] > 1000 and counts["test", 0] > 700
    assert all(r.label is None for r in records if r.subject_id != "100")
    # Causal: every training segment of a record ends before any held-out one starts.
    for subject in {r.subject_id for r in records}:
        mine = [r for r in records if r.subject_id == subject]
        train_end = max(r.extra["start"] + 256 for r in mine if r.split == "train")
        test_start = min(r.extra["start"] for r in mine if r.split == "test")
        assert train_end <= test_start


def test_prepared_segments_are_z_scored_items(scanned, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    modality, records = scanned
    prepared = modality.prepare(records, tmp_path)
    assert prepared.values.shape == (len(records), 1, 256)
    assert prepared.fs == 128 and prepared.integer_labels
    segment = np.asarray(prepared.values[0], dtype=np.float64)
    assert abs(segment.mean()) < 1e-4 and abs(segment.std() - 1) < 1e-3
    labelled = [i for i, r in enumerate(records) if r.label is not None][:4]
    dataset = modality.dataset(prepared, labelled, "classification")
    batch = collate_items([dataset[k] for k in range(len(dataset))])
    assert set(batch) == {"x", "subject", "index", "position", "fs", "label"}
    assert batch["label"].tolist() == [records[i].label for i in labelled]
    assert prepared.participants[int(batch["subject"][0])] == "100"
    # A second prepare reopens the cache instead of writing another.
    again = modality.prepare(records, tmp_path)
    assert again.root == prepared.root and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(DataError, match="label"):
        unlabelled = [i for i, r in enumerate(records) if r.label is None][:2]
        modality.dataset(prepared, unlabelled, "classification")


def test_missing_leads_error_or_skip(wfdb_dir: Path) -> None:
    ppg = {**ECG, "leads": ["PLETH"], "beats": None, "window_seconds": 10.0}
    with pytest.raises(DataError, match="missing_leads: skip") as info:
        BiosignalModality(ppg).scan(wfdb_dir)
    assert any("100.hea" in line for line in info.value.problems)
    records = BiosignalModality({**ppg, "missing_leads": "skip"}).scan(wfdb_dir)
    assert {r.subject_id for r in records} == {"a103l", "v102s"}


def test_manifest_maps_records_to_participants(wfdb_dir: Path, tmp_path: Path) -> None:
    for name in ("a103l.hea", "a103l.mat", "v102s.hea", "v102s.dat"):
        shutil.copy(wfdb_dir / name, tmp_path / name)
    (tmp_path / "manifest.csv").write_text(
        "subject_id,record,label\nalice,a103l.hea,0\nalice,v102s.hea,0\n"
    )
    modality = BiosignalModality({**ECG, "beats": None, "window_seconds": 10.0})
    records = modality.scan(tmp_path / "manifest.csv")
    assert {r.subject_id for r in records} == {"alice"}
    assert {r.extra["source"] for r in records} == {
        str(tmp_path / "a103l.hea"),
        str(tmp_path / "v102s.hea"),
    }


def test_validate_command_passes_and_names_corrupt_records(wfdb_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(wfdb_dir), "--modality", "biosignal"])
    assert ok.exit_code == 0, ok.output
    for name in ("100.hea", "100.dat", "v102s.hea", "v102s.dat", "a103l.hea"):
        shutil.copy(wfdb_dir / name, tmp_path / name)
    (tmp_path / "v102s.dat").write_bytes((wfdb_dir / "v102s.dat").read_bytes()[:1000])
    header = (tmp_path / "100.hea").read_text().replace("100 2 360", "100 3 360")
    (tmp_path / "100.hea").write_text(header)
    before = sorted(p.name for p in tmp_path.iterdir())
    bad = runner.invoke(app, ["validate", str(tmp_path), "--modality", "biosignal"])
    assert bad.exit_code == 1
    lines = [line for line in bad.stdout.splitlines() if line.strip()]
    assert len(lines) == 3, bad.stdout
    assert any("100.hea" in line for line in lines)
    assert any("v102s" in line and "bytes" in line for line in lines)
    assert any("a103l" in line and "a103l.mat" in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
