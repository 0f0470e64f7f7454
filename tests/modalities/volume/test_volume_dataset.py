"""Datasets over a prepared cache: item contract, crops per purpose, padding, reproducible
randomness, foreground-centred crops and the errors a user can cause."""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medssl.modalities.base import Record
from medssl.modalities.volume.adapter import VolumePreprocessing
from medssl.modalities.volume.cache import prepare_volumes
from medssl.modalities.volume.dataset import VolumeDataset
from medssl.modalities.volume.prepared import PreparedVolumes
from medssl.platform.batch import collate_items
from medssl.platform.errors import DataError

SHAPES = [(12, 10, 8), (12, 10, 8), (5, 6, 4)]


def _prepared(root: Path, shapes: list[tuple[int, int, int]] = SHAPES) -> PreparedVolumes:
    rng = np.random.default_rng(0)
    records = []
    for k, shape in enumerate(shapes):
        image = rng.normal(size=shape).astype(np.float32)
        mask = np.zeros(shape, np.uint8)
        mask[-2, -2, -2] = 1  # a single foreground voxel in a corner
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / f"v{k}.nii")
        nib.save(nib.Nifti1Image(mask, np.eye(4)), root / f"v{k}_seg.nii")
        records.append(
            Record(
                subject_id=["zeta", "alpha", "mid"][k],
                image=str(root / f"v{k}.nii"),
                mask=str(root / f"v{k}_seg.nii"),
                label=k,
            )
        )
    return prepare_volumes(records, root / "cache", VolumePreprocessing(intensity="none"))


def _find_offset(volume: np.ndarray, patch: np.ndarray) -> tuple[int, ...] | None:
    """Brute force: where in `volume` (C, X, Y, Z) the `patch` was cut from."""
    ranges = [range(v - p + 1) for v, p in zip(volume.shape[1:], patch.shape[1:], strict=True)]
    for start in itertools.product(*ranges):
        region = tuple(slice(s, s + p) for s, p in zip(start, patch.shape[1:], strict=True))
        if np.array_equal(volume[(slice(None), *region)], patch):
            return start
    return None


def test_item_contract_and_collate(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    ds = VolumeDataset(prepared, [0, 1], "segmentation", seed=3, patch_size=(8, 8, 8))
    items = [ds[0], ds[1]]
    assert set(items[0]) == {"x", "index", "subject", "spacing", "label", "mask"}
    batch = collate_items(items)
    assert batch["x"].shape == (2, 1, 8, 8, 8) and batch["x"].dtype == torch.float32
    assert batch["mask"].shape == (2, 1, 8, 8, 8) and batch["mask"].dtype == torch.int64
    assert batch["index"].tolist() == [0, 1] and batch["index"].dtype == torch.int64
    # subject = rank of the id among sorted unique ids: alpha 0, mid 1, zeta 2.
    assert batch["subject"].tolist() == [2, 0]
    assert batch["spacing"].dtype == torch.float32 and batch["label"].tolist() == [0, 1]


def test_random_crops_are_reproducible_and_cut_from_the_volume(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    ds = VolumeDataset(prepared, [0, 1], "pretrain", seed=7, patch_size=(6, 5, 4))
    again = VolumeDataset(prepared, [0, 1], "pretrain", seed=7, patch_size=(6, 5, 4))
    a, b = ds[0]["x"], again[0]["x"]
    np.testing.assert_array_equal(a, b)
    assert "mask" not in ds[0]
    assert _find_offset(prepared.image(0), a) is not None
    ds.set_epoch(1)
    epoch_crops = {_find_offset(prepared.image(0), ds[0]["x"]) for _ in range(4)}
    assert len(epoch_crops) > 1  # repeated draws and epochs move the crop
    other_seed = VolumeDataset(prepared, [0], "pretrain", seed=8, patch_size=(6, 5, 4))
    starts = {_find_offset(prepared.image(0), other_seed[0]["x"])}
    starts |= {_find_offset(prepared.image(0), ds[0]["x"])}
    assert None not in starts


def test_small_volumes_are_padded_with_their_minimum(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    ds = VolumeDataset(prepared, [2], "pretrain", patch_size=(9, 6, 10))
    x = ds[0]["x"]
    image = prepared.image(2)
    assert x.shape == (1, 9, 6, 10)
    # (5, 6, 4) inside (9, 6, 10): centred, 2 voxels before on x, 3 before on z.
    np.testing.assert_array_equal(x[:, 2:7, :, 3:7], image)
    assert np.all(x[:, :2] == image.min()) and np.all(x[..., :3] == image.min())


def test_centred_crop_for_classification_and_embed(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    for purpose in ("classification", "embed"):
        ds = VolumeDataset(prepared, [0], purpose, seed=1, patch_size=(6, 6, 6))
        np.testing.assert_array_equal(ds[0]["x"], prepared.image(0)[:, 3:9, 2:8, 1:7])


def test_foreground_crop_always_contains_foreground(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    ds = VolumeDataset(
        prepared, [0], "segmentation", seed=0, patch_size=(4, 4, 4), foreground_crop_prob=1.0
    )
    assert all(ds[0]["mask"].sum() == 1 for _ in range(10))
    never = VolumeDataset(
        prepared, [0], "segmentation", seed=0, patch_size=(4, 4, 4), foreground_crop_prob=0.0
    )
    assert sum(int(never[0]["mask"].sum()) for _ in range(20)) < 10


def test_evaluate_returns_whole_volumes_with_masks(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    ds = VolumeDataset(prepared, [0, 2], "evaluate", patch_size=(4, 4, 4))
    item = ds[1]
    assert item["x"].shape == (1, 5, 6, 4) and item["mask"].shape == (1, 5, 6, 4)
    np.testing.assert_array_equal(item["x"], prepared.image(2))


def test_user_errors(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    with pytest.raises(DataError, match=r"v0.nii has shape .*v2.nii has shape"):
        VolumeDataset(prepared, [0, 2], "pretrain")
    assert len(VolumeDataset(prepared, [0, 1], "pretrain")) == 2  # equal shapes need no patch
    prepared.records[1].label = None
    with pytest.raises(DataError, match="v1.nii has no label"):
        VolumeDataset(prepared, [0, 1], "classification", patch_size=(4, 4, 4))
    assert "label" not in VolumeDataset(prepared, [0, 1], "pretrain")[0]
    prepared.entries[0] = dict(prepared.entries[0], mask_file=None)
    with pytest.raises(DataError, match="v0.nii has no mask"):
        VolumeDataset(prepared, [0], "segmentation", patch_size=(4, 4, 4))
    with pytest.raises(ValueError, match="purpose"):
        VolumeDataset(prepared, [0], "train")
    with pytest.raises(ValueError, match="outside"):
        VolumeDataset(prepared, [5], "pretrain")
