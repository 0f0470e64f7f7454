"""Validation of ECG/PPG datasets: the real WFDB folder passes; corrupt copies of MIT-BIH 100
give one line per record naming it, without reading samples; manifests are checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.biosignal.readers import read_signal
from medssl.modalities.biosignal.validate import read_manifest, validate_biosignal
from medssl.modalities.biosignal.wfdb_records import expected_bytes
from medssl.platform.errors import DataError


@pytest.fixture
def wfdb_folder(shared_data: Path) -> Path:
    root = shared_data / "physio" / "wfdb"
    if not root.is_dir():
        pytest.skip(f"no physio/wfdb folder in {shared_data}")
    return root


def copy_100(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("100.hea", "100.dat"):
        shutil.copyfile(source / name, folder / name)
    return folder / "100.hea"


@pytest.fixture
def corrupt(wfdb_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three broken copies of record 100, in no_dat/, bad_count/ and truncated/; reading
    samples is forbidden so that any attempt to read them fails the test."""
    no_dat = copy_100(wfdb_folder, tmp_path / "no_dat")
    no_dat.with_suffix(".dat").unlink()
    bad_count = copy_100(wfdb_folder, tmp_path / "bad_count")
    bad_count.write_text(bad_count.read_text().replace("100 2 360", "100 3 360"))
    truncated = copy_100(wfdb_folder, tmp_path / "truncated")
    with truncated.with_suffix(".dat").open("r+b") as handle:
        handle.truncate(1_000_000)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"samples were read: {args}")

    monkeypatch.setattr("wfdb.rdrecord", refuse)
    return tmp_path


@pytest.mark.integration
def test_real_wfdb_folder_has_no_problem(wfdb_folder: Path) -> None:
    problems, warnings = validate_biosignal(wfdb_folder)
    assert problems == []
    v102 = str(wfdb_folder / "v102s.hea")
    assert (
        f"{v102}: lead PLETH: nan in 17 runs (0.068 s in all) from 12.424 s to 292.596 s"
        in warnings
    )
    assert f"{v102}: lead RESP: nan from 148.156 s to 148.16 s" in warnings
    assert not any("100.hea" in w or "s0010_re" in w for w in warnings)


@pytest.mark.integration
def test_corrupt_copies_give_one_line_per_record(corrupt: Path) -> None:
    problems, warnings = validate_biosignal(corrupt)
    lines = sorted(str(p) for p in problems)
    assert warnings == [] and len(lines) == 3
    assert all("\n" not in line for line in lines)
    bad_count, no_dat, truncated = lines
    assert bad_count.startswith(f"{corrupt / 'bad_count' / '100.hea'}: declares 3 signals")
    assert "has 2 signal lines" in bad_count
    assert no_dat == (
        f"{corrupt / 'no_dat' / '100.hea'}: names 100.dat, which does not exist; "
        "put the signal file beside its header"
    )
    assert truncated.startswith(f"{corrupt / 'truncated' / '100.hea'}: 100.dat has 1000000 bytes")
    assert "need 1950000" in truncated


@pytest.mark.integration
def test_each_corrupt_record_alone_and_read_refuses_it(corrupt: Path) -> None:
    for name in ("no_dat", "bad_count", "truncated"):
        record = corrupt / name / "100.hea"
        problems, _ = validate_biosignal(record)
        assert [p.path for p in problems] == [str(record)]
        with pytest.raises(DataError, match=problems[0].message[:20]):
            read_signal(record)


def test_expected_bytes_per_format() -> None:
    assert expected_bytes(16, 10) == 20 and expected_bytes(212, 4) == 6
    assert expected_bytes(212, 5) == 8 and expected_bytes(24, 3) == 9
    assert expected_bytes(32, 2) == 8 and expected_bytes(80, 7) == 7
    assert expected_bytes(61, 3) == 6
    assert expected_bytes(310, 6) == 8 and expected_bytes(311, 7) == 10
    assert expected_bytes(508, 100) is None  # FLAC: size unknown from the header


def test_csv_and_npz_problems_and_manifest(tmp_path: Path) -> None:
    (tmp_path / "good.csv").write_text(
        "time_ms,PLETH\n" + "\n".join(f"{i * 10},{i % 7}" for i in range(300))
    )
    (tmp_path / "bad.csv").write_text("time_ms,PLETH\n0,1\n10,x\n")
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "subject_id,record,split,label\n"
        "p1,good.csv,train,1\np2,bad.csv,val,AF\np3,strings.npy,,\np4,gone.csv,test,0\n"
    )
    problems, warnings = validate_biosignal(manifest)
    by_path = {Path(p.path).name: p.message for p in problems}
    assert set(by_path) == {"bad.csv", "strings.npy", "gone.csv"} and len(problems) == 3
    assert "line 3 column 'PLETH' holds 'x'" in by_path["bad.csv"]
    assert "numeric" in by_path["strings.npy"]
    assert "row 5" in by_path["gone.csv"] and "does not exist" in by_path["gone.csv"]
    assert warnings == []
    records, _ = read_manifest(manifest)
    assert [(r.subject_id, r.split, r.label) for r in records[:2]] == [
        ("p1", "train", 1),
        ("p2", "val", None),
    ]
    assert records[1].extra["label"] == "AF" and records[0].image == str(tmp_path / "good.csv")


def test_manifest_reading_settings_and_splits(tmp_path: Path) -> None:
    """A CSV without a time column validates when its manifest row gives `fs`; bad splits and
    non-numeric settings are problems naming the row."""
    (tmp_path / "raw.csv").write_text("\n".join(str(i % 9) for i in range(500)))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject_id,record,split,fs\np1,raw.csv,Training,100\n")
    problems, _ = validate_biosignal(manifest)
    assert problems == []
    records, _ = read_manifest(manifest)
    assert records[0].split == "train" and records[0].extra["reading"] == (("fs", 100.0),)
    manifest.write_text("subject_id,record,split,fs\np1,raw.csv,later,fast\n")
    messages = [p.message for p in validate_biosignal(manifest)[0]]
    assert any("split 'later'" in m for m in messages)
    assert any("fs 'fast' is not a number" in m for m in messages)


def test_json_manifest_and_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "time,x\n" + "\n".join(f"{i / 100},{i % 5}" for i in range(200))
    )
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"subject_id": "s1", "record": "a.csv"}]))
    assert validate_biosignal(manifest) == ([], [])
    no_record = tmp_path / "bad.json"
    no_record.write_text(json.dumps([{"subject_id": "s1", "file": "a.csv"}]))
    problems, _ = validate_biosignal(no_record)
    assert [str(p) for p in problems] == [f"{no_record}: has no column record; add it"]
    problems, _ = validate_biosignal(tmp_path / "nowhere")
    assert len(problems) == 1 and "does not exist" in problems[0].message
