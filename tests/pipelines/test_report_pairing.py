"""Tests of the image-report(-ECG) evaluation pairing: the diagnosis rule on hand-written
reports, the pairing on small synthetic inputs (npz, report archive, WFDB record), and on the
real PneumoniaMNIST / IU X-ray / MIT-BIH files."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.text.diagnosis import report_label
from medssl.modalities.text.reports import Report, read_report_archive
from medssl.pipelines.report_pairing import SYNTHETIC_NOTE, build_report_pairing
from medssl.platform.errors import DataError


def _report(impression: str, findings: str = "") -> Report:
    return Report("CXR0", findings, impression, "0.xml")


# ----------------------------------------------------------------------------- synthetic inputs


def _openi_xml(report_id: str, findings: str, impression: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="{report_id}"/>'
        "<MedlineCitation><Article><Abstract>"
        f'<AbstractText Label="FINDINGS">{findings}</AbstractText>'
        f'<AbstractText Label="IMPRESSION">{impression}</AbstractText>'
        "</Abstract></Article></MedlineCitation></eCitation>"
    ).encode()


def _write_archive(path: Path, impressions: dict[str, str]) -> Path:
    """OpenI reports with these impressions (findings "Heart size normal.", but none
    for an impression of placeholders only, so that the report is empty)."""
    with tarfile.open(path, "w:gz") as tar:
        for i, (report_id, impression) in enumerate(impressions.items()):
            findings = "" if impression.strip(" X.") == "" else "Heart size normal."
            data = _openi_xml(report_id, findings, impression)
            info = tarfile.TarInfo(f"ecgen-radiology/{i}.xml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _write_record(folder: Path, abnormal_at_s: float | None = 15.5) -> Path:
    """30 s of 2 leads at 100 Hz, a beat every second from 0.5 s, the one at `abnormal_at_s`
    a "V" (None: all "N"), and a rhythm mark "+" (no beat)."""
    wfdb = pytest.importorskip("wfdb")
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(3000) / 100.0
    signal = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * 1.3 * t)], axis=1)
    wfdb.wrsamp(
        "rec",
        fs=100,
        units=["mV", "mV"],
        sig_name=["MLII", "V5"],
        p_signal=signal,
        fmt=["16", "16"],
        write_dir=str(folder),
    )
    beats = np.arange(50, 3000, 100)
    symbols = [
        "V" if abnormal_at_s is not None and abs(b / 100 - abnormal_at_s) < 0.3 else "N"
        for b in beats
    ]
    wfdb.wrann("rec", "atr", np.concatenate([[10], beats]), ["+", *symbols], write_dir=str(folder))
    return folder / "rec"


@pytest.fixture
def small_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An npz of 6 label-1 and 20 label-0 images, 8 pneumonia / 5 normal / 2 other / 1 empty
    reports, and a WFDB record with 10 abnormal and 11 normal 10-s windows."""
    labels = np.array([1] * 6 + [0] * 20, dtype=np.uint8).reshape(-1, 1)
    images = np.random.default_rng(0).integers(0, 255, (len(labels), 28, 28), dtype=np.uint8)
    npz = tmp_path / "xray.npz"
    np.savez(npz, train_images=images, train_labels=labels)
    impressions = {f"CXR{i}": "Right lower lobe pneumonia." for i in range(1, 9)}
    impressions |= {f"CXR{i}": "No acute cardiopulmonary disease." for i in range(9, 14)}
    impressions |= {
        "CXR14": "Stable cardiomegaly.",
        "CXR15": "No pneumothorax or infiltrate.",
        "CXR16": "XXXX.",
    }
    archive = _write_archive(tmp_path / "reports.tgz", impressions)
    return npz, archive, _write_record(tmp_path)


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_pairs_are_limited_per_class_by_the_shorter_side(small_inputs, tmp_path: Path) -> None:
    npz, archive, record = small_inputs
    summary = build_report_pairing(npz, archive, tmp_path / "out", seed=3, ecg_source=record)
    assert (summary.reports_positive, summary.reports_negative, summary.reports_unused) == (8, 5, 2)
    assert summary.reports_dropped_empty == 1
    assert (summary.pairs_positive, summary.pairs_negative) == (6, 5)  # 6 images, 5 reports
    rows = _rows(summary.manifest)
    assert len({r["subject_id"] for r in rows}) == len(rows) == 11
    labels = np.load(npz)["train_labels"][:, 0]
    for row in rows:
        index = int(row["image"].rpartition("#")[2])
        assert int(row["label"]) == labels[index]
        assert row["image"] == f"../xray.npz#{index}"  # relative to the manifest
    assert len({r["image"] for r in rows}) == len(rows)
    document = json.loads(summary.pairing_json.read_text())
    assert document["note"] == SYNTHETIC_NOTE
    assert document["pairs"]["limited_by"] == {"positive": "images", "negative": "reports"}


def test_ecg_windows_follow_the_beats_and_reuse_is_counted(small_inputs, tmp_path: Path) -> None:
    npz, archive, record = small_inputs
    labels = np.array([1] * 20 + [0] * 6, dtype=np.uint8).reshape(-1, 1)
    np.savez(npz, train_images=np.zeros((26, 28, 28), np.uint8), train_labels=labels)
    summary = build_report_pairing(npz, archive, tmp_path / "out", ecg_source=record)
    # windows start every 1 s over 0..20 s; the V beat at 15.5 s lies in those from 6 to 15 s
    assert (summary.ecg_windows_abnormal, summary.ecg_windows_normal) == (10, 11)
    assert summary.pairs_positive == 8 and summary.ecg_reused_abnormal == 0
    assert summary.ecg_reused_normal == 0
    with np.load(summary.ecg_file) as ecg:
        assert ecg["ecg"].shape[1:] == (2, 1000) and ecg["ecg"].dtype == np.float32
        assert float(ecg["fs"]) == 100.0 and ecg["leads"].tolist() == ["MLII", "V5"]
        abnormal = ecg["abnormal"]
        np.testing.assert_allclose(ecg["ecg"].mean(axis=2), 0.0, atol=1e-4)
    for row in _rows(summary.manifest):
        assert abnormal[int(row["ecg"].rpartition("#")[2])] == (row["label"] == "1")


def test_a_kind_that_runs_out_is_reused_and_counted(small_inputs, tmp_path: Path) -> None:
    npz, archive, record = small_inputs
    all_normal = _write_record(tmp_path / "normal", abnormal_at_s=None)
    with pytest.raises(DataError, match="no abnormal window"):
        build_report_pairing(npz, archive, tmp_path / "out", ecg_source=all_normal)
    assert not (tmp_path / "out").exists()  # nothing written on failure
    more = _write_archive(
        tmp_path / "many.tgz", {f"CXR{i}": "No acute disease." for i in range(15)}
    )
    only_normal = tmp_path / "normal.npz"
    np.savez(
        only_normal,
        train_images=np.zeros((15, 28, 28), np.uint8),
        train_labels=np.zeros((15, 1), np.uint8),
    )
    summary = build_report_pairing(only_normal, more, tmp_path / "out", ecg_source=record)
    assert summary.pairs_negative == 15 and summary.ecg_windows_normal == 11
    assert summary.ecg_reused_normal == 4
    refs = [row["ecg"] for row in _rows(summary.manifest)]
    assert len(set(refs)) == 11


def test_a_rebuild_replaces_the_files_and_drops_a_stale_ecg(small_inputs, tmp_path: Path) -> None:
    npz, archive, record = small_inputs
    out = tmp_path / "out"
    first = build_report_pairing(npz, archive, out, seed=1, ecg_source=record)
    assert first.ecg_file is not None and first.ecg_file.is_file()
    second = build_report_pairing(npz, archive, out, seed=2)
    assert second.ecg_file is None and not (out / "ecg.npz").exists()
    assert "ecg" not in _rows(second.manifest)[0]
    assert json.loads(second.pairing_json.read_text())["seed"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv", "pairing.json"]


def test_an_npz_without_labels_names_the_file_and_its_arrays(small_inputs, tmp_path: Path) -> None:
    _, archive, _ = small_inputs
    npz = tmp_path / "unlabelled.npz"
    np.savez(npz, train_images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"unlabelled\.npz has arrays \['train_images'\]"):
        build_report_pairing(npz, archive, tmp_path / "out")
    np.savez(npz, pixels=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"unlabelled\.npz.*\['pixels'\]"):
        build_report_pairing(npz, archive, tmp_path / "out")


def test_a_missing_input_is_named(small_inputs, tmp_path: Path) -> None:
    npz, archive, _ = small_inputs
    with pytest.raises(DataError, match="nowhere.tgz does not exist"):
        build_report_pairing(npz, tmp_path / "nowhere.tgz", tmp_path / "out")
    with pytest.raises(DataError, match=r"norecord\.hea does not exist"):
        build_report_pairing(npz, archive, tmp_path / "out", ecg_source=tmp_path / "norecord")


# ----------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def real_pairing(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    npz = shared_data / "image2d" / "medmnist" / "pneumoniamnist_trainsplit.npz"
    archive = shared_data / "image2d" / "cxr" / "NLMCXR_reports.tgz"
    out = tmp_path_factory.mktemp("pairing")
    summary = build_report_pairing(
        npz, archive, out, seed=0, ecg_source=shared_data / "physio" / "wfdb" / "100", max_pairs=60
    )
    return summary, npz, read_report_archive(archive)


@pytest.mark.integration
def test_real_pairing_uses_each_report_once_with_the_rule_s_label(real_pairing) -> None:
    summary, npz, corpus = real_pairing
    rows = _rows(summary.manifest)
    assert len({r["subject_id"] for r in rows}) == len(rows) == 60
    reports = {r.report_id: r for r in corpus.reports}
    image_labels = np.load(npz)["train_labels"][:, 0]
    for row in rows:
        report = reports[row["subject_id"]]
        assert report_label(report) == int(row["label"])
        assert row["report_text"] == report.text and report.text
        assert report.source.endswith(f"#{row['report_source']}")
        assert image_labels[int(row["image"].rpartition("#")[2])] == int(row["label"])
    counts = summary.reports_positive, summary.reports_negative, summary.reports_unused
    assert sum(counts) == summary.reports_read == len(corpus.reports)
    assert min(counts[:2]) > 100  # the rule finds both classes in the IU corpus


@pytest.mark.integration
def test_real_pairing_counts_match_pairing_json(real_pairing) -> None:
    summary, _, _ = real_pairing
    document = json.loads(summary.pairing_json.read_text())
    rows = _rows(summary.manifest)
    positive = sum(r["label"] == "1" for r in rows)
    assert document["pairs"] == {
        "total": len(rows),
        "positive": positive,
        "negative": len(rows) - positive,
        "limited_by": {"positive": "max_pairs", "negative": "max_pairs"},
        "balanced": False,
    }
    assert (positive, len(rows) - positive) == (summary.pairs_positive, summary.pairs_negative)
    assert document["reports"]["labelled"] == {
        "positive": summary.reports_positive,
        "negative": summary.reports_negative,
        "unused": summary.reports_unused,
    }
    assert document["note"] == SYNTHETIC_NOTE and "synthetic" in document["ecg"]["note"]
    assert document["ecg"]["windows_in_record"]["abnormal"] == summary.ecg_windows_abnormal


@pytest.mark.integration
def test_real_manifest_is_read_by_the_image_adapter(real_pairing) -> None:
    from medssl.modalities.image.manifest import scan_records

    summary, _, _ = real_pairing
    records = scan_records(summary.manifest)
    rows = _rows(summary.manifest)
    assert [r.subject_id for r in records] == [row["subject_id"] for row in rows]
    assert [r.label for r in records] == [int(row["label"]) for row in rows]
    assert all(r.extra["report_text"] for r in records)
    with np.load(summary.ecg_file) as ecg:
        assert ecg["ecg"].shape[1:] == (2, 1000) and ecg["ecg"].dtype == np.float32
        assert float(ecg["fs"]) == 100.0 and ecg["leads"].tolist() == ["MLII", "V5"]
        assert len(ecg["ecg"]) == len({row["ecg"] for row in rows})
        np.testing.assert_allclose(ecg["ecg"].std(axis=2), 1.0, atol=1e-3)


@pytest.mark.integration
def test_cli_names_a_missing_input_in_one_line(
    medssl_cli, shared_data: Path, tmp_path: Path
) -> None:
    archive = shared_data / "image2d" / "cxr" / "NLMCXR_reports.tgz"
    missing = tmp_path / "no_such_images.npz"
    result = medssl_cli(
        "pair-reports",
        "--images",
        str(missing),
        "--reports",
        str(archive),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert not (tmp_path / "out").exists()
