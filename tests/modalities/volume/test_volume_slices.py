"""Axial slices in reading orientation, the slice dataset and the volume-partition batch
sampler: items, partitions, crops, kept-indices, the one-slice-per-partition rule, coverage,
reproducibility, and a real CT."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medssl.modalities.base import Record
from medssl.modalities.volume.adapter import VolumePreprocessing
from medssl.modalities.volume.cache import prepare_volumes
from medssl.modalities.volume.prepared import PreparedVolumes
from medssl.modalities.volume.slices import (
    SliceDataset,
    VolumePartitionSampler,
    axial_slices,
    partition_of,
    partition_slice_loader,
)
from medssl.platform.batch import Batch
from medssl.platform.errors import DataError

# (X, Y, Z): 10 slices, 3 slices (fewer than S = 4), 7 slices.
SHAPES = [(8, 6, 10), (8, 6, 3), (8, 6, 7)]


def _prepared(root: Path, shapes: list[tuple[int, int, int]] = SHAPES) -> PreparedVolumes:
    rng = np.random.default_rng(0)
    records = []
    for k, shape in enumerate(shapes):
        image = rng.normal(size=shape).astype(np.float32)
        mask = rng.integers(0, 3, size=shape).astype(np.uint8)
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / f"v{k}.nii")
        nib.save(nib.Nifti1Image(mask, np.eye(4)), root / f"v{k}_seg.nii")
        records.append(
            Record(
                subject_id=f"p{k}",
                image=str(root / f"v{k}.nii"),
                mask=str(root / f"v{k}_seg.nii"),
                label=k,
            )
        )
    return prepare_volumes(records, root / "cache", VolumePreprocessing(intensity="none"))


def test_partition_of_by_hand() -> None:
    assert [partition_of(z, 10, 4) for z in range(10)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert [partition_of(z, 6, 3) for z in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [partition_of(z, 12, 6) for z in range(12)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [partition_of(z, 3, 4) for z in range(3)] == [0, 1, 2]  # partition 3 stays empty


def test_items_slices_partitions_and_masks(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    ds = SliceDataset(prepared, [0, 1, 2], partitions=4)
    assert len(ds) == 10 + 3 + 7
    item = ds[12]  # volume 1, z = 2
    assert set(item) == {
        "x",
        "index",
        "subject",
        "partition",
        "position",
        "spacing",
        "label",
        "mask",
    }
    np.testing.assert_array_equal(item["x"], prepared.image(1)[..., 2])
    np.testing.assert_array_equal(item["mask"], np.asarray(prepared.mask(1))[..., 2])
    assert item["x"].shape == (1, 8, 6) and item["mask"].dtype == np.int64
    assert (int(item["index"]), int(item["subject"]), int(item["partition"])) == (12, 1, 2)
    assert float(item["position"]) == pytest.approx(1.0)
    parts = [int(ds[p]["partition"]) for p in range(10)]
    assert parts == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert [len(c) for c in ds.cells()[1]] == [1, 1, 1, 0]
    assert [len(c) for c in ds.cells()[2]] == [2, 2, 2, 1]  # floor(z * 4 / 7)
    assert "mask" not in SliceDataset(prepared, [0], with_mask=False)[0]


def test_slice_size_crops_and_pads(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    ds = SliceDataset(prepared, [0], slice_size=(6, 8))
    item = ds[4]
    plane = prepared.image(0)[0, :, :, 4]
    fill = prepared.entries[0]["fill"]
    expected = np.full((6, 8), fill, dtype=np.float32)
    expected[:, 1:7] = plane[1:7, :]  # X cropped 8 -> 6 from 1, Y padded 6 -> 8 at 1
    np.testing.assert_array_equal(item["x"][0], expected)
    mask = np.zeros((6, 8), dtype=np.int64)
    mask[:, 1:7] = np.asarray(prepared.mask(0))[0, 1:7, :, 4]
    np.testing.assert_array_equal(item["mask"][0], mask)


def test_kept_index(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    images = [r.image for r in prepared.records]
    # Volume 0 keeps 4 slices (partition 1 = z 3, 4 emptied); volume 1 absent: none served.
    kept = {images[0]: [9, 0, 2, 2, 7], images[2]: [6], "elsewhere.nii": [99]}
    ds = SliceDataset(prepared, [0, 1, 2], kept=kept)
    assert len(ds) == 5
    assert [int(ds[p]["partition"]) for p in range(4)] == [0, 0, 2, 3]
    np.testing.assert_array_equal(ds[3]["x"], prepared.image(0)[..., 9])
    assert ds.cells()[0] == [[0, 1], [], [2], [3]] and ds.cells()[1] == [[], [], [], []]
    with pytest.raises(DataError, match="does not fit") as error:
        SliceDataset(prepared, [0, 1], kept={images[0]: [10], images[1]: [-1, 1]})
    assert len(error.value.problems) == 2 and images[0] in error.value.problems[0]
    with pytest.raises(DataError, match="no slices"):
        SliceDataset(prepared, [1], kept={})


def _random_cells(rng: np.random.Generator, volumes: int, partitions: int) -> list[list[list[int]]]:
    """Random slice counts per (volume, partition), some partitions empty."""
    cells, position = [], 0
    for _ in range(volumes):
        volume = []
        for _ in range(partitions):
            n = int(rng.integers(0, 4))
            volume.append(list(range(position, position + n)))
            position += n
        cells.append(volume)
    return cells


def _owner(cells: list[list[list[int]]]) -> dict[int, tuple[int, int]]:
    return {p: (v, s) for v, vol in enumerate(cells) for s, cell in enumerate(vol) for p in cell}


@pytest.mark.parametrize(
    ("volumes", "m", "partitions"), [(7, 3, 4), (5, 5, 3), (9, 2, 6), (4, 3, 1)]
)
def test_sampler_one_slice_per_partition_and_coverage(
    volumes: int, m: int, partitions: int
) -> None:
    rng = np.random.default_rng(volumes * 10 + m)
    for trial in range(20):
        cells = _random_cells(rng, volumes, partitions)
        owner = _owner(cells)
        eligible = {v for v, vol in enumerate(cells) if any(vol)}
        if len(eligible) < m:
            continue
        sampler = VolumePartitionSampler(cells, m, seed=trial)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(batches) == -(-len(eligible) // m)
            seen: set[int] = set()
            for batch in batches:
                keys = [owner[p] for p in batch]
                assert len(keys) == len(set(keys))  # never two slices of one (volume, partition)
                vols = {v for v, _ in keys}
                assert len(vols) == m
                # Every non-empty partition of every volume in the batch is there.
                assert len(batch) == sum(1 for v in vols for cell in cells[v] if cell)
                seen |= vols
            assert seen == eligible  # every volume in every epoch


def test_sampler_reproducible_resumable_and_distributed() -> None:
    cells = _random_cells(np.random.default_rng(3), 8, 4)
    a = VolumePartitionSampler(cells, 2, seed=5)
    b = VolumePartitionSampler(cells, 2, seed=5)
    assert a.batches(1) == b.batches(1)
    assert a.batches(1) != a.batches(2) and a.batches(1) != VolumePartitionSampler(
        cells, 2, seed=6
    ).batches(1)
    a.set_epoch(1, start_batch=2)
    assert list(a) == b.batches(1)[2:]
    assert list(a) == b.batches(1)  # start_batch applies to one pass only
    full = [[[0, 1], [2], [3], [4, 5]], [[6], [7], [8, 9], [10]], [[11], [12], [13], [14]]]
    full += [[[15], [16], [17], [18]], [[19], [], [20], [21]]]  # the last volume is incomplete
    whole = VolumePartitionSampler(full, 4, seed=0, drop_incomplete=True)
    ranks = [
        VolumePartitionSampler(full, 4, seed=0, drop_incomplete=True, num_replicas=2, rank=r)
        for r in (0, 1)
    ]
    assert whole.volumes == [0, 1, 2, 3]
    for k, batch in enumerate(whole.batches(0)):
        assert ranks[0].batches(0)[k] + ranks[1].batches(0)[k] == batch
        assert len(batch) == 16
    with pytest.raises(ValueError, match="drop_incomplete"):
        VolumePartitionSampler(full, 4, num_replicas=2)
    with pytest.raises(ValueError, match="exceeds"):
        VolumePartitionSampler(full, 5, drop_incomplete=True)


def test_loader_batches(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    loader = partition_slice_loader(
        prepared, [0, 1, 2], volumes_per_batch=2, partitions=4, seed=1, slice_size=(8, 8)
    )
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        assert isinstance(batch, Batch) and batch["x"].shape[1:] == (1, 8, 8)
        pairs = list(zip(batch["subject"].tolist(), batch["partition"].tolist(), strict=True))
        assert len(pairs) == len(set(pairs))
        assert batch["partition"].dtype == torch.int64 and batch["position"].dtype == torch.float32


@pytest.mark.integration
def test_real_ct_slices_and_masks(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "image3d" / "totalsegmentator"
    ct, seg = folder / "example_ct_sm.nii.gz", folder / "example_seg.nii.gz"
    record = Record(subject_id="s0", image=str(ct), mask=str(seg))
    prepared = prepare_volumes([record], tmp_path, VolumePreprocessing(intensity="none"))
    ds = SliceDataset(prepared, [0], partitions=4)
    hu = nib.as_closest_canonical(nib.load(ct)).get_fdata()  # RAS, (122, 101, 30)
    labels = np.asarray(nib.as_closest_canonical(nib.load(seg)).dataobj)
    assert len(ds) == hu.shape[2] == 30
    assert [len(c) for c in ds.cells()[0]] == [8, 7, 8, 7]
    for z in (0, 13, 29):
        item = ds[z]
        assert item["x"].shape == (1, 122, 101) and item["mask"].shape == (1, 122, 101)
        np.testing.assert_allclose(item["x"][0], hu[..., z], atol=1e-3)
        np.testing.assert_array_equal(item["mask"][0], labels[..., z])
        assert int(item["partition"]) == z * 4 // 30
    assert sum(int((ds[z]["mask"] > 0).any()) for z in range(30)) > 10  # organs in most slices
    assert ds[13]["x"].min() < -500 and ds[13]["x"].max() > 200  # air and bone in HU


# ----------------------------------------------------------------------------- axial_slices


def _coords(shape: tuple[int, int, int]) -> np.ndarray:
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (100 * x + 10 * y + z).astype(np.float32)


def test_axial_slices_of_ras_show_anterior_up_and_patient_right_left() -> None:
    image = _coords((4, 3, 5))  # x -> Right, y -> Anterior, z -> Superior
    slices, axis, positions = axial_slices(image, "RAS")
    assert axis == 2 and positions == [0, 1, 2, 3, 4] and slices.shape == (5, 3, 4)
    for j in range(5):
        for r in range(3):
            for c in range(4):
                assert slices[j, r, c] == image[3 - c, 2 - r, j]


def test_the_same_body_in_lps_or_lpi_gives_the_same_slices() -> None:
    ras = _coords((4, 3, 5))
    expected, _, _ = axial_slices(ras, "RAS")
    lps = np.ascontiguousarray(ras[::-1, ::-1, :])
    slices, _, positions = axial_slices(lps, "LPS")
    assert torch.equal(slices, expected) and positions == [0, 1, 2, 3, 4]
    lpi = np.ascontiguousarray(lps[:, :, ::-1])
    slices, axis, positions = axial_slices(lpi, "LPI")
    assert torch.equal(slices, expected)
    assert axis == 2 and positions == [4, 3, 2, 1, 0]  # index along the axis, inferior first
    sra = np.ascontiguousarray(np.transpose(ras, (2, 0, 1)))
    slices, axis, _ = axial_slices(sra, "SRA")
    assert torch.equal(slices, expected) and axis == 0
