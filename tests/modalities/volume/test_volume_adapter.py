"""The "volume" adapter: registration, the preprocessing model and contract, and one pass
scan -> validate -> prepare -> dataset -> Batch on real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import medssl.modalities  # noqa: F401  (registers the adapters)
from medssl.modalities.volume.adapter import VolumeModality, VolumePreprocessing
from medssl.platform.batch import batch_fields
from medssl.platform.registry import MODALITIES


def test_registered_with_its_declarations() -> None:
    cls = MODALITIES.get("volume")
    assert cls is VolumeModality
    assert cls.provides == frozenset(
        {"subject", "spacing", "label", "mask", "index", "partition", "position"}
    )
    assert cls.provides <= set(batch_fields()) and cls.default_encoder == "unet"


def test_contract_is_json_and_complete() -> None:
    modality = VolumeModality(
        {
            "spacing": [1.5, 1.5, 2.0],
            "intensity": "hu_window",
            "hu_window": [-125, 225],
            "patch_size": [64, 64, 32],
        }
    )
    contract = json.loads(json.dumps(modality.contract()))
    assert contract == {
        "orientation": "RAS",
        "spacing": [1.5, 1.5, 2.0],
        "intensity": "hu_window",
        "hu_window": [-125.0, 225.0],
        "percentiles": [0.5, 99.5],
        "patch_size": [64, 64, 32],
        "foreground_crop_prob": 0.5,
        "slice_size": None,
        "partitions": 4,
        "channels": ["image"],
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"orientation": "RAX"},
        {"spacing": [1.0, 0.0, 1.0]},
        {"intensity": "zscore"},
        {"hu_window": [100, -100]},
        {"percentiles": [50, 10]},
        {"patch_size": [0, 8, 8]},
        {"foreground_crop_prob": 1.5},
        {"windw": [0, 1]},
    ],
)
def test_bad_preprocessing_is_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        VolumePreprocessing.model_validate(bad)


@pytest.mark.integration
def test_end_to_end_on_real_ct(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "image3d" / "totalsegmentator"
    # A folder layout of symlinks: the ct/seg pair is found by its `_seg` suffix.
    data = tmp_path / "data"
    data.mkdir()
    (data / "ct.nii.gz").symlink_to(source / "example_ct_sm.nii.gz")
    (data / "ct_seg.nii.gz").symlink_to(source / "example_seg.nii.gz")
    (data / "ct2").symlink_to(source / "example_ct_dicom", target_is_directory=True)
    (data / "ct2_seg.nii.gz").symlink_to(source / "example_seg_dicom.nii.gz")
    modality = VolumeModality(
        {
            "spacing": [3.0, 3.0, 3.0],
            "intensity": "hu_window",
            "patch_size": [48, 48, 16],
            "foreground_crop_prob": 1.0,
        }
    )
    records = modality.scan(data)
    assert sorted(r.subject_id for r in records) == ["ct", "ct2"]
    assert modality.validate(data) == []
    prepared = modality.prepare(records, tmp_path / "cache")
    assert len(prepared) == 2
    dicom = next(i for i, r in enumerate(records) if r.subject_id == "ct2")
    # 512 x 0.977 mm -> 167 voxels of 3 mm; 20 x 2 mm -> 13.
    assert tuple(prepared.meta(dicom)["shape"]) == (1, 167, 167, 13)
    ds = modality.dataset(prepared, [0, 1], "segmentation", seed=0)
    batch = modality.collate([ds[0], ds[1]])
    assert batch["x"].shape == (2, 1, 48, 48, 16)
    assert float(batch["x"].min()) >= 0.0 and float(batch["x"].max()) <= 1.0
    assert int(batch["mask"].amax(dim=(1, 2, 3, 4)).min()) > 0  # foreground-centred crops
    np.testing.assert_allclose(batch["spacing"].numpy(), 3.0)
    shutil.rmtree(tmp_path / "cache")
