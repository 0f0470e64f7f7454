"""The "timeseries" adapter: registration, discovery of TRAIN/TEST pairs, the memory-mapped
cache, and items that collate into Batches."""

from __future__ import annotations

import numpy as np
import pytest

import medssl.modalities.timeseries  # noqa: F401  (registers "timeseries")
from medssl.modalities.timeseries import TimeSeriesModality
from medssl.platform.errors import DataError
from medssl.platform.registry import MODALITIES


def test_registered_with_its_contract():
    cls = MODALITIES.get("timeseries")
    assert cls is TimeSeriesModality
    assert cls.default_encoder == "ts2vec"
    assert {"subject", "label", "index"} <= cls.provides
    contract = TimeSeriesModality({"normalisation": "series"}).contract()
    assert contract["normalisation"] == "series" and contract["padding"] == "nan"
    with pytest.raises(ValueError):
        TimeSeriesModality({"normalisation": "minmax"})
    with pytest.raises(ValueError):
        TimeSeriesModality({"forecasting": {"split_fractions": (0.8, 0.2, 0.2)}})


def _pair(tmp_path, write_tsv, rng):
    write_tsv(tmp_path / "P_TRAIN.tsv", [2, 1, 2, 1], rng.normal(size=(4, 6)))
    write_tsv(tmp_path / "P_TEST.tsv", [1, 2, 2], rng.normal(size=(3, 6)))


def test_scan_folder_and_prefix(tmp_path, write_tsv):
    _pair(tmp_path, write_tsv, np.random.default_rng(0))
    modality = TimeSeriesModality()
    records = modality.scan(tmp_path)
    assert modality.scan(tmp_path / "P") == records
    assert [r.split for r in records] == ["train"] * 4 + ["test"] * 3
    assert [r.label for r in records] == [1, 0, 1, 0, 0, 1, 1]  # classes ("1", "2")
    assert len({r.subject_id for r in records}) == 7
    (tmp_path / "Q_TRAIN.tsv").write_text("1\t0.5\n")
    with pytest.raises(DataError, match="several datasets"):
        modality.scan(tmp_path)


def test_prepare_caches_once_and_serves_items(tmp_path, write_tsv):
    _pair(tmp_path, write_tsv, np.random.default_rng(1))
    modality = TimeSeriesModality({"normalisation": "none"})
    records = modality.scan(tmp_path / "P")
    prepared = modality.prepare(records, tmp_path / "cache")
    stamp = (prepared.root / "values.npy").stat().st_mtime_ns
    again = modality.prepare(records, tmp_path / "cache")
    assert again.root == prepared.root
    assert (again.root / "values.npy").stat().st_mtime_ns == stamp
    assert isinstance(again.values, np.memmap)
    raw = np.loadtxt(tmp_path / "P_TEST.tsv", delimiter="\t")
    ds = modality.dataset(prepared, [4, 6], "classification")
    item = ds[1]
    assert item["x"].dtype == np.float32 and item["x"].shape == (1, 6)
    np.testing.assert_array_equal(item["x"][0], raw[2, 1:].astype(np.float32))
    assert item["label"] == 1 and item["subject"] == 6 and item["index"] == 6
    batch = modality.collate([ds[0], ds[1]])
    assert batch["x"].shape == (2, 1, 6) and batch["label"].tolist() == [0, 1]
    other = TimeSeriesModality({"normalisation": "series"}).prepare(records, tmp_path / "cache")
    assert other.root != prepared.root


def test_unlabelled_series_cannot_be_classified(tmp_path):
    np.save(tmp_path / "u.npy", np.random.default_rng(2).normal(size=(5, 2, 7)))
    modality = TimeSeriesModality()
    records = modality.scan(tmp_path / "u.npy")
    assert all(r.label is None and r.split is None for r in records)
    prepared = modality.prepare(records, tmp_path / "cache")
    assert prepared.fitted_on == "all"  # no TRAIN file: said so, and warned
    assert "label" not in modality.dataset(prepared, range(5), "pretrain")[0]
    with pytest.raises(DataError, match="class label"):
        modality.dataset(prepared, range(5), "classification")


@pytest.mark.integration
def test_japanese_vowels_end_to_end(ts_data, tmp_path):
    modality = TimeSeriesModality()
    records = modality.scan(ts_data / "uea" / "JapaneseVowels")
    assert len(records) == 640 and records[270].split == "test"
    prepared = modality.prepare(records, tmp_path)
    assert prepared.values.shape == (640, 12, 29)
    values = np.asarray(prepared.values, dtype=np.float64)
    train = values[:270]
    np.testing.assert_allclose(np.nanmean(train, axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(train, axis=(0, 2)), 1, atol=1e-5)
    assert abs(np.nanmean(values[270:])) > 1e-3  # test series keep the training scale
    for i in (0, 300, 639):
        n = prepared.lengths[i]
        assert np.isfinite(values[i, :, :n]).all() and np.isnan(values[i, :, n:]).all()
    assert prepared.class_names == tuple(str(k) for k in range(1, 10))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("folder", "name", "n", "shape"),
    [
        ("ucr", "Coffee", 56, (1, 286)),
        ("ucr", "ItalyPowerDemand", 1096, (1, 24)),
        ("uea", "BasicMotions", 80, (6, 100)),
    ],
)
def test_real_datasets_scan(ts_data, folder, name, n, shape):
    modality = TimeSeriesModality()
    assert modality.validate(ts_data / folder / name) == []
    records = modality.scan(ts_data / folder / name)
    assert len(records) == n
    assert {r.extra["channels"] for r in records} == {shape[0]}
