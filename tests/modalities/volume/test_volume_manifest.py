"""Discovery: manifests (CSV / JSON), folder layouts, npz files, and their structural problems."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medssl.modalities.volume.manifest import discover, scan_records
from medssl.platform.errors import DataError


def _nifti(path: Path, shape: tuple[int, int, int] = (4, 4, 4), value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full(shape, value, np.float32), np.eye(4)), path)
    return path


def test_csv_manifest_resolves_paths_labels_masks_and_splits(tmp_path: Path) -> None:
    _nifti(tmp_path / "scans" / "a.nii.gz")
    _nifti(tmp_path / "scans" / "b.nii.gz")
    _nifti(tmp_path / "masks" / "b_seg.nii.gz")
    (tmp_path / "m.csv").write_text(
        "subject_id,image,label,split,site\n"
        "p1,scans/a.nii.gz,1,train,x\n"
        "p2,scans/b.nii.gz,masks/b_seg.nii.gz,Validation,y\n"
    )
    records, problems = discover(tmp_path / "m.csv")
    assert problems == []
    a, b = records
    assert a.subject_id == "p1" and a.image == str(tmp_path / "scans" / "a.nii.gz")
    assert a.label == 1 and isinstance(a.label, int) and a.mask is None and a.split == "train"
    assert a.extra == {"site": "x"}
    assert b.label is None and b.mask == str(tmp_path / "masks" / "b_seg.nii.gz")
    assert b.split == "val"


def test_json_manifest_and_float_labels(tmp_path: Path) -> None:
    _nifti(tmp_path / "a.nii")
    (tmp_path / "m.json").write_text(
        json.dumps([{"subject_id": 7, "image": "a.nii", "label": 0.25}])
    )
    (record,) = scan_records(tmp_path / "m.json")
    assert record.subject_id == "7" and record.label == pytest.approx(0.25)


def test_manifest_structural_problems(tmp_path: Path) -> None:
    _nifti(tmp_path / "a.nii")
    _nifti(tmp_path / "b.nii")
    (tmp_path / "no_id.csv").write_text("patient,image\np1,a.nii\n")
    (problem,) = discover(tmp_path / "no_id.csv")[1]
    assert "subject_id" in problem.message and problem.path == str(tmp_path / "no_id.csv")
    with pytest.raises(DataError, match="subject_id") as err:
        scan_records(tmp_path / "no_id.csv")
    assert err.value.problems
    (tmp_path / "dup.csv").write_text(
        "subject_id,image,label\np1,a.nii,0\np1,b.nii,1\np2,missing.nii,0\np3,a.nii,cat\n"
    )
    messages = [str(p) for p in discover(tmp_path / "dup.csv")[1]]
    assert any("listed under 2 subject ids ('p1', 'p3')" in m for m in messages)
    # Several scans of one subject are fine: splits keep them together.
    assert not any("b.nii" in m for m in messages)
    assert any(
        m.startswith(str(tmp_path / "missing.nii")) and "does not exist" in m for m in messages
    )
    assert any("'cat'" in m for m in messages)


def test_folder_pairs_masks_by_suffix_and_finds_dicom_series(
    tmp_path: Path, ct_series_writer: Callable, hu_volume: Callable
) -> None:
    _nifti(tmp_path / "ct1.nii.gz")
    _nifti(tmp_path / "ct1_seg.nii.gz")
    _nifti(tmp_path / "sub" / "mr2.nii")
    _nifti(tmp_path / "orphan_label.nii.gz")
    (tmp_path / "readme.txt").write_text("ignored")
    ct_series_writer(tmp_path / "series3", hu_volume((3, 3, 3)))
    records, problems = discover(tmp_path)
    by_id = {r.subject_id: r for r in records}
    assert set(by_id) == {"ct1", "mr2", "series3"}
    assert by_id["ct1"].mask == str(tmp_path / "ct1_seg.nii.gz")
    assert by_id["series3"].image == str(tmp_path / "series3")
    assert [p.path for p in problems] == [str(tmp_path / "orphan_label.nii.gz")]


def test_folder_nnunet_layout(tmp_path: Path) -> None:
    _nifti(tmp_path / "imagesTr" / "case_001_0000.nii.gz")
    _nifti(tmp_path / "labelsTr" / "case_001.nii.gz")
    _nifti(tmp_path / "imagesTr" / "case_002_0000.nii.gz")
    _nifti(tmp_path / "labelsTr" / "case_003.nii.gz")
    records, problems = discover(tmp_path)
    assert [r.subject_id for r in records] == ["case_001", "case_002"]
    assert records[0].mask == str(tmp_path / "labelsTr" / "case_001.nii.gz")
    assert [p.path for p in problems] == [
        str(tmp_path / "imagesTr" / "case_002_0000.nii.gz"),
        str(tmp_path / "labelsTr" / "case_003.nii.gz"),
    ]


def test_npz_records(tmp_path: Path) -> None:
    images = np.zeros((3, 4, 4, 4), np.uint8)
    np.savez(
        tmp_path / "d.npz",
        train_images=images,
        train_labels=np.array([[0], [1], [1]]),
        test_images=images[:2],
        test_labels=np.array([[1], [0]]),
    )
    records = scan_records(tmp_path / "d.npz")
    assert [r.subject_id for r in records] == ["0", "1", "2", "3", "4"]
    assert [r.label for r in records] == [0, 1, 1, 1, 0]
    assert [r.split for r in records] == ["train"] * 3 + ["test"] * 2
    assert records[4].image == f"{tmp_path / 'd.npz'}#4"


def test_missing_dataset_path(tmp_path: Path) -> None:
    records, problems = discover(tmp_path / "nope")
    assert records == [] and problems[0].path == str(tmp_path / "nope")


@pytest.mark.integration
def test_medmnist_npz_scan(shared_data: Path) -> None:
    records = scan_records(
        shared_data / "image3d" / "medmnist" / "adrenalmnist3d_64_trainsplit.npz"
    )
    assert len(records) == 1188
    assert {r.label for r in records} == {0, 1}
    assert records[10].subject_id == "10" and records[10].image.endswith(".npz#10")
