"""Tests of the kept-index file: the round trip, its summary, atomic writing, and clear
errors for every way a file can be broken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medssl.platform.errors import DataError
from medssl.platform.reduction import load_kept_index, read_kept_index, write_kept_index

VOLUMES = {
    "scans/b.nii.gz": {"slices": 5, "kept": [0, 4]},
    "arrays.npz#3": {"slices": 64, "kept": [0, 1, 17, 63]},
    "dicom/series_1": {"slices": 3, "kept": [0], "axis": 2},
}


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "kept.json"
    written = write_kept_index(path, "dhash", {"threshold": 6}, VOLUMES, seconds=1.5)
    assert load_kept_index(path) == {k: v["kept"] for k, v in VOLUMES.items()}
    document = read_kept_index(path)
    assert document == written
    assert document["strategy"] == "dhash" and document["params"] == {"threshold": 6}
    assert document["volumes"]["dicom/series_1"]["axis"] == 2
    assert document["summary"] == {
        "volumes": 3,
        "slices_in": 72,
        "slices_kept": 7,
        "ratio": pytest.approx(7 / 72),
        "seconds": 1.5,
    }


def test_file_does_not_depend_on_the_order_volumes_come_in(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_kept_index(a, "dhash", {}, VOLUMES)
    write_kept_index(b, "dhash", {}, dict(reversed(list(VOLUMES.items()))))
    assert a.read_text() == b.read_text()
    assert list(json.loads(a.read_text())["volumes"]) == sorted(VOLUMES)


def test_writing_leaves_no_temporary_file_and_replaces_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "kept.json"
    write_kept_index(path, "dhash", {}, VOLUMES)
    write_kept_index(path, "every_nth", {"n": 2}, {"v": {"slices": 4, "kept": [0, 2]}})
    assert [p.name for p in tmp_path.iterdir()] == ["kept.json"]
    assert load_kept_index(path) == {"v": [0, 2]}


def test_writer_refuses_a_broken_entry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"volume 'v': 'kept' holds an index outside 0..3"):
        write_kept_index(tmp_path / "k.json", "dhash", {}, {"v": {"slices": 4, "kept": [0, 4]}})
    assert not (tmp_path / "k.json").exists()


def test_missing_file_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"kept.json: kept-index not found; run `medssl reduce`"):
        load_kept_index(tmp_path / "kept.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"not a readable kept-index JSON"),
        ("[1, 2]", r"not a kept-index \(no 'volumes' mapping\)"),
        ('{"volumes": {"v": {"slices": 3, "kept": [0, 3]}}}', r"1 broken volume entry"),
        ('{"volumes": {"v": {"slices": 3, "kept": [2, 1]}}}', r"must increase strictly"),
        ('{"volumes": {"v": {"slices": -1, "kept": []}}}', r"'slices' must be a count"),
        ('{"volumes": {"v": {"slices": 3, "kept": "0,1"}}}', r"'kept' must be a list"),
        ('{"volumes": {"v": [0, 1]}}', r"entry must be a mapping"),
    ],
)
def test_broken_files_are_data_errors_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "kept.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        load_kept_index(path)
    assert str(path) in str(caught.value)


def test_every_broken_entry_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "kept.json"
    path.write_text(
        json.dumps(
            {"volumes": {"a": {"slices": 2, "kept": [5]}, "b": {"slices": 2, "kept": [1, 1]}}}
        )
    )
    with pytest.raises(DataError) as caught:
        load_kept_index(path)
    assert len(caught.value.problems) == 2
    assert "2 broken volume entries" in str(caught.value)
