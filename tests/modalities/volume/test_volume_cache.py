"""The preprocessing cache: reuse without re-reading, rebuilds on config or source change,
atomic writes, memory-mapped npz arrays, and a JSON index that carries no patient identifier."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medssl.modalities.base import Record
from medssl.modalities.volume import cache as cache_module
from medssl.modalities.volume.adapter import VolumePreprocessing
from medssl.modalities.volume.cache import prepare_volumes
from medssl.modalities.volume.readers import read_volume


def _dataset(root: Path, n: int = 3) -> list[Record]:
    rng = np.random.default_rng(0)
    records = []
    for k in range(n):
        image = rng.normal(size=(6, 7, 8)).astype(np.float32) * 100
        mask = (rng.random((6, 7, 8)) > 0.7).astype(np.uint8)
        affine = np.diag([-1.0, 1.0, 2.0, 1.0])  # LAS: reorientation has work to do
        nib.save(nib.Nifti1Image(image, affine), root / f"s{k}.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), root / f"s{k}_seg.nii.gz")
        records.append(
            Record(
                subject_id=f"p{k}",
                image=str(root / f"s{k}.nii.gz"),
                mask=str(root / f"s{k}_seg.nii.gz"),
                label=k % 2,
            )
        )
    return records


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def counting(path: str):  # type: ignore[no-untyped-def]
        calls.append(str(path))
        return read_volume(path)

    monkeypatch.setattr(cache_module, "read_volume", counting)
    return calls


def _npy_mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*.npy")}


def test_prepare_reuses_entries_and_rebuilds_on_change(
    tmp_path: Path, counted_reads: list[str]
) -> None:
    records = _dataset(tmp_path)
    cfg = VolumePreprocessing(intensity="minmax")
    first = prepare_volumes(records, tmp_path / "cache", cfg)
    assert len(counted_reads) == 6  # image + mask of three records
    mtimes = _npy_mtimes(tmp_path / "cache")
    second = prepare_volumes(records, tmp_path / "cache", cfg)
    assert len(counted_reads) == 6 and _npy_mtimes(tmp_path / "cache") == mtimes
    np.testing.assert_array_equal(first.image(1), second.image(1))
    # A new spacing is a new config: everything is read again, into a new folder.
    prepare_volumes(
        records,
        tmp_path / "cache",
        VolumePreprocessing(intensity="minmax", spacing=(2.0, 2.0, 2.0)),
    )
    assert len(counted_reads) == 12
    assert len(list((tmp_path / "cache").iterdir())) == 2
    # Touching one source rebuilds that record only.
    stat = os.stat(records[0].image)
    os.utime(records[0].image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    prepare_volumes(records, tmp_path / "cache", cfg)
    assert counted_reads[12:] == [records[0].image, records[0].mask]


def test_cached_arrays_are_preprocessed_and_memory_mapped(tmp_path: Path) -> None:
    records = _dataset(tmp_path, n=1)
    prepared = prepare_volumes(records, tmp_path / "c", VolumePreprocessing(intensity="minmax"))
    source = read_volume(records[0].image).array
    expected = source[::-1]  # LAS -> RAS flips the first axis
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(prepared.image(0)[0], expected, atol=1e-6)
    mask = prepared.mask(0)
    assert isinstance(mask, np.memmap) and mask.shape == (1, 6, 7, 8)
    np.testing.assert_array_equal(mask[0], read_volume(records[0].mask).array[::-1])
    meta = prepared.meta(0)
    assert meta["orientation"] == "RAS" and meta["spacing"] == [1.0, 1.0, 2.0]
    assert meta["label"] == 0 and meta["subject_id"] == "p0"
    (index_file,) = (tmp_path / "c").glob("*/index-*.json")
    index = json.loads(index_file.read_text())
    assert index["items"][0]["shape"] == [1, 6, 7, 8] and index["items"][0]["subject_id"] == "p0"
    assert not list((tmp_path / "c").rglob("*.pkl"))


def test_a_killed_write_leaves_no_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = _dataset(tmp_path, n=1)
    cfg = VolumePreprocessing()
    real_save = np.save

    def dying_save(f, array, **kwargs):  # type: ignore[no-untyped-def]
        f.write(b"\x93NUMPY half")  # some bytes hit the disk, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        prepare_volumes(records, tmp_path / "c", cfg)
    left = [p.name for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert left == ["config.json"]
    monkeypatch.setattr(cache_module.np, "save", real_save)
    prepared = prepare_volumes(records, tmp_path / "c", cfg)
    assert prepared.image(0).shape == (1, 6, 7, 8)


def test_npz_is_cached_once_as_one_memmap(tmp_path: Path, counted_reads: list[str]) -> None:
    images = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 8), dtype=np.uint8)
    np.savez_compressed(
        tmp_path / "d.npz", train_images=images, train_labels=np.arange(5).reshape(5, 1) % 2
    )
    records = [
        Record(subject_id=str(i), image=f"{tmp_path / 'd.npz'}#{i}", label=i % 2) for i in range(5)
    ]
    prepared = prepare_volumes(records, tmp_path / "c", VolumePreprocessing())
    assert counted_reads == []  # the npz array is taken whole, never item by item
    arrays = list((tmp_path / "c").rglob("*.npy"))
    assert len(arrays) == 1 and np.load(arrays[0], mmap_mode="r").shape == (5, 1, 8, 8, 8)
    for i in (0, 4):
        np.testing.assert_allclose(prepared.image(i)[0], images[i] / 255.0, atol=1e-7)
    resampled = prepare_volumes(
        records[:2], tmp_path / "c", VolumePreprocessing(spacing=(2.0, 2.0, 2.0))
    )
    assert resampled.image(1).shape == (1, 4, 4, 4)
    assert resampled.image(1).dtype == np.float32 and resampled.image(1).max() <= 1.0


def test_index_and_metadata_hold_no_patient_identifier(
    tmp_path: Path, ct_series_writer: Callable, hu_volume: Callable, patient_identity
) -> None:
    ct_series_writer(tmp_path / "series", hu_volume((5, 5, 4)))
    records = [Record(subject_id="anon-1", image=str(tmp_path / "series"))]
    prepared = prepare_volumes(records, tmp_path / "c", VolumePreprocessing(intensity="hu_window"))
    texts = [p.read_text() for p in (tmp_path / "c").rglob("*.json")]
    texts.append(repr(prepared.meta(0)))
    for secret in (*patient_identity, "Doe", "19700101"):
        assert not any(secret in text for text in texts)


@pytest.mark.integration
def test_real_series_privacy_in_cache(shared_data: Path, tmp_path: Path) -> None:
    import pydicom

    folder = shared_data / "image3d" / "monai" / "CT_DICOM"
    header = pydicom.dcmread(next(folder.iterdir()))
    prepared = prepare_volumes(
        [Record(subject_id="x", image=str(folder))], tmp_path / "c", VolumePreprocessing()
    )
    texts = [p.read_text() for p in (tmp_path / "c").rglob("*.json")] + [repr(prepared.meta(0))]
    for secret in (str(header.PatientName), str(header.PatientID)):
        assert not any(secret in text for text in texts)


def test_prepared_handle_pickles_for_dataloader_workers(tmp_path: Path) -> None:
    import pickle

    records = _dataset(tmp_path, n=2)
    prepared = prepare_volumes(records, tmp_path / "c", VolumePreprocessing())
    before = prepared.image(1)  # opens memory maps, which must not travel
    clone = pickle.loads(pickle.dumps(prepared))
    np.testing.assert_array_equal(clone.image(1), before)
    assert clone.subject(1) == prepared.subject(1) == 1
