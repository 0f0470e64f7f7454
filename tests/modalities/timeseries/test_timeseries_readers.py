"""Series readers: every format against values read the obvious way, on the real UCR/UEA files
and on small files written here; variable lengths are NaN-padded, never cut."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.modalities.timeseries.readers import CsvOptions, read_series
from medssl.platform.errors import DataError

UCR_TSV = {"ArrowHead": 251, "Chinatown": 24, "Coffee": 286}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(UCR_TSV))
@pytest.mark.parametrize("split", ["TRAIN", "TEST"])
def test_ucr_tsv_matches_loadtxt(ts_data, name, split):
    path = ts_data / "ucr" / f"{name}_{split}.tsv"
    reference = np.loadtxt(path, delimiter="\t")
    s = read_series(path)
    assert s.values.dtype == np.float32
    assert s.values.shape == (reference.shape[0], 1, UCR_TSV[name])
    np.testing.assert_array_equal(s.values[:, 0], reference[:, 1:].astype(np.float32))
    assert (s.lengths == UCR_TSV[name]).all()
    names = np.array([int(c) for c in s.class_names])
    np.testing.assert_array_equal(names[s.labels], reference[:, 0].astype(int))
    assert list(names) == sorted(names)
    assert s.source == str(path)


def _rows_by_hand(lines: list[str]) -> tuple[list[list[list[float]]], list[str]]:
    series, labels = [], []
    for line in lines:
        *dims, label = line.split(":")
        series.append([[float(v) for v in d.split(",")] for d in dims])
        labels.append(label)
    return series, labels


@pytest.mark.integration
@pytest.mark.parametrize(
    ("folder", "name", "shape"),
    [
        ("ucr", "GunPoint_TRAIN", (50, 1, 150)),
        ("ucr", "ItalyPowerDemand_TRAIN", (67, 1, 24)),
        ("ucr", "ItalyPowerDemand_TEST", (1029, 1, 24)),
        ("uea", "BasicMotions_TRAIN", (40, 6, 100)),
    ],
)
def test_equal_length_ts_matches_hand_parse(ts_data, data_lines, folder, name, shape):
    path = ts_data / folder / f"{name}.ts"
    s = read_series(path)
    assert s.values.shape == shape
    series, labels = _rows_by_hand(data_lines(path))
    np.testing.assert_array_equal(s.values, np.array(series, dtype=np.float32))
    assert [s.class_names[k] for k in s.labels] == labels
    assert (s.lengths == shape[2]).all()


@pytest.mark.integration
def test_basic_motions_keeps_header_class_order(ts_data):
    s = read_series(ts_data / "uea" / "BasicMotions_TRAIN.ts")
    assert s.class_names == ("Standing", "Running", "Walking", "Badminton")
    assert np.bincount(s.labels).tolist() == [10, 10, 10, 10]


@pytest.mark.integration
def test_japanese_vowels_is_variable_length_and_nan_padded(ts_data, data_lines):
    path = ts_data / "uea" / "JapaneseVowels_TRAIN.ts"
    s = read_series(path)
    assert s.values.shape == (270, 12, 26)
    series, labels = _rows_by_hand(data_lines(path))
    hand_lengths = [len(x[0]) for x in series]
    np.testing.assert_array_equal(s.lengths, hand_lengths)
    assert s.lengths.min() == 7 and s.lengths.max() == 26  # the lengths really vary
    for i, n in enumerate(s.lengths):
        assert np.isfinite(s.values[i, :, :n]).all()
        assert np.isnan(s.values[i, :, n:]).all()
    first = np.array(series[0], dtype=np.float32)
    assert first.shape == (12, 20)
    np.testing.assert_array_equal(s.values[0, :, :20], first)
    assert s.values[0, 0, 0] == np.float32(1.860936)
    assert s.values[0, 1, 0] == np.float32(-0.207383)
    test = read_series(ts_data / "uea" / "JapaneseVowels_TEST.ts")
    assert test.values.shape == (370, 12, 29)  # longer than any training series: not cut


def test_ts_missing_values_become_nan(tmp_path, write_ts):
    header = "@problemName tiny\n@missing true\n@univariate false\n@dimensions 2\n" + (
        "@equalLength true\n@seriesLength 4\n@classLabel true a b"
    )
    path = write_ts(tmp_path / "tiny.ts", header, ["1,?,3,4:5,6,NaN,8:b", "9,10,11,12:?,?,?,1:a"])
    s = read_series(path)
    expected = np.array(
        [[[1, np.nan, 3, 4], [5, 6, np.nan, 8]], [[9, 10, 11, 12], [np.nan] * 3 + [1]]],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(s.values, expected)
    assert s.labels.tolist() == [1, 0] and s.class_names == ("a", "b")
    assert s.lengths.tolist() == [4, 4]


def test_ts_variable_length_pads_every_dimension(tmp_path, write_ts):
    header = "@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true x"
    path = write_ts(tmp_path / "v.ts", header, ["1,2:3,4:x", "1,2,3,4,5:6,7,8,9,10:x"])
    s = read_series(path)
    assert s.values.shape == (2, 2, 5)
    assert s.lengths.tolist() == [2, 5]
    assert np.isnan(s.values[0, :, 2:]).all()
    np.testing.assert_array_equal(s.values[1, 1], [6, 7, 8, 9, 10])


def test_arff_numeric_attributes(tmp_path):
    text = (
        "% comment\n@relation demo\n@attribute t0 numeric\n@attribute t1 real\n"
        "@attribute t2 numeric\n@attribute target {neg,pos}\n@data\n1,2,3,pos\n4,?,6,neg\n"
    )
    path = tmp_path / "demo.arff"
    path.write_text(text)
    s = read_series(path)
    np.testing.assert_array_equal(s.values[:, 0], [[1, 2, 3], [4, np.nan, 6]])
    assert s.class_names == ("neg", "pos") and s.labels.tolist() == [1, 0]


def test_arff_relational_multivariate(tmp_path):
    text = (
        "@relation mv\n@attribute series relational\n  @attribute t0 numeric\n"
        "  @attribute t1 numeric\n  @attribute t2 numeric\n@end series\n"
        "@attribute class {1,2}\n@data\n'1,2,3\\n4,5,6',2\n'7,8,9\\n10,11,12',1\n"
    )
    path = tmp_path / "mv.arff"
    path.write_text(text)
    s = read_series(path)
    assert s.values.shape == (2, 2, 3)
    np.testing.assert_array_equal(s.values[1], [[7, 8, 9], [10, 11, 12]])
    assert [s.class_names[k] for k in s.labels] == ["2", "1"]


def test_csv_wide_with_labels_and_ragged_lengths(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("series_id,label,t0,t1,t2\na,up,1,2,3\nb,down,4,5,\n")
    s = read_series(path)
    np.testing.assert_array_equal(s.values[:, 0], [[1, 2, 3], [4, 5, np.nan]])
    assert s.lengths.tolist() == [3, 2]
    assert [s.class_names[k] for k in s.labels] == ["up", "down"]


def test_csv_without_header_is_values_only(tmp_path):
    path = tmp_path / "bare.csv"
    path.write_text("1,2,3\n4,5,6\n")
    s = read_series(path)
    assert s.labels is None
    np.testing.assert_array_equal(s.values[:, 0], [[1, 2, 3], [4, 5, 6]])


def test_csv_long_orders_steps_by_time(tmp_path):
    path = tmp_path / "long.csv"
    rows = [
        "series_id,time,hr,spo2,label",
        "p1,2,61,97,sick",
        "p2,0,70,99,well",
        "p1,0,60,95,sick",
        "p1,1,62,96,sick",
        "p2,1,71,98,well",
    ]
    path.write_text("\n".join(rows) + "\n")
    s = read_series(path, csv_options=CsvOptions(layout="auto"))
    assert s.values.shape == (2, 2, 3)
    np.testing.assert_array_equal(s.values[0], [[60, 62, 61], [95, 96, 97]])
    np.testing.assert_array_equal(s.values[1, :, :2], [[70, 71], [99, 98]])
    assert s.lengths.tolist() == [3, 2]
    assert s.channel_names == ("hr", "spo2")
    assert [s.class_names[k] for k in s.labels] == ["sick", "well"]


def test_npy_and_npz_arrays(tmp_path):
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    x[1, :, 3] = np.nan
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "a_labels.npy", np.array([3, 7]))
    s = read_series(tmp_path / "a.npy")
    np.testing.assert_array_equal(s.values, x.astype(np.float32))
    assert s.lengths.tolist() == [4, 3]
    assert s.class_names == ("3", "7") and s.labels.tolist() == [0, 1]
    np.savez(tmp_path / "b.npz", x=x[:, 0], y=np.array(["cat", "ant"]))
    t = read_series(tmp_path / "b.npz")
    assert t.values.shape == (2, 1, 4)
    assert t.class_names == ("ant", "cat") and t.labels.tolist() == [1, 0]


def test_test_file_maps_labels_with_training_classes(tmp_path, write_tsv):
    path = write_tsv(tmp_path / "X_TEST.tsv", [5, 2], np.ones((2, 3)))
    s = read_series(path, class_names=("2", "5"))
    assert s.labels.tolist() == [1, 0]
    with pytest.raises(DataError) as err:
        read_series(path, class_names=("2", "3"), reference="X_TRAIN.tsv")
    assert "'5'" in str(err.value) and "X_TRAIN.tsv" in str(err.value)
