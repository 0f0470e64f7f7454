"""Validation: each malformed case is one problem naming its file and line; every problem is
listed at once; the loader refuses (DataError with the list) instead of reading half-way."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.modalities.timeseries import TimeSeriesModality, validate_series
from medssl.platform.errors import DataError

TS_HEADER = "@problemName bad\n@univariate false\n@dimensions 2\n@equalLength true\n" + (
    "@seriesLength 3\n@classLabel true a b"
)


def _one(problems, path, where):
    assert len(problems) == 1, [str(p) for p in problems]
    text = str(problems[0])
    assert text.startswith(str(path)), text
    assert where in text, text
    return text


def test_ragged_tsv_row(tmp_path):
    path = tmp_path / "r_TRAIN.tsv"
    path.write_text("1\t0.1\t0.2\t0.3\n2\t0.4\t0.5\n1\t0.6\t0.7\t0.8\n")
    text = _one(validate_series(path), path, "line 2")
    assert "3 columns" in text and "4" in text


def test_ts_header_lies_about_dimensions(tmp_path, write_ts):
    path = write_ts(tmp_path / "d.ts", TS_HEADER, ["1,2,3:4,5,6:a", "1,2,3:4,5,6:7,8,9:b"])
    text = _one(validate_series(path), path, "line 9")
    assert "3 dimension(s)" in text and "@dimensions 2" in text


def test_ts_header_lies_about_length(tmp_path, write_ts):
    path = write_ts(tmp_path / "l.ts", TS_HEADER, ["1,2,3,4:4,5,6,7:a", "1,2,3:4,5,6:b"])
    text = _one(validate_series(path), path, "line 8")
    assert "@seriesLength 3" in text


def test_ts_missing_value_when_header_says_none(tmp_path, write_ts):
    header = TS_HEADER.replace("@problemName bad", "@problemName bad\n@missing false")
    path = write_ts(tmp_path / "m.ts", header, ["1,2,3:4,5,6:a", "1,?,3:4,5,6:b"])
    _one(validate_series(path), path, "line 10 dimension 1")


def test_all_missing_series(tmp_path):
    path = tmp_path / "n.tsv"
    path.write_text("1\t1\t2\n2\tNaN\tNaN\n")
    text = _one(validate_series(path), path, "line 2")
    assert "entirely missing" in text


def test_non_numeric_cell(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("1\t1\t2\n2\t3\tabc\n")
    text = _one(validate_series(path), path, "line 2")
    assert "'abc'" in text


def test_unknown_test_label(tmp_path, write_tsv):
    write_tsv(tmp_path / "X_TRAIN.tsv", [1, 2], np.ones((2, 3)))
    test = write_tsv(tmp_path / "X_TEST.tsv", [1, 2, 3], np.ones((3, 3)))
    text = _one(validate_series(tmp_path), test, "line 3")
    assert "'3'" in text and "X_TRAIN.tsv" in text


def test_empty_file(tmp_path):
    path = tmp_path / "e.tsv"
    path.write_text("")
    text = _one(validate_series(path), path, "")
    assert "no series" in text


def test_arff_row_with_too_many_values(tmp_path):
    path = tmp_path / "a.arff"
    path.write_text("@relation r\n@attribute t0 numeric\n@attribute c {x,y}\n@data\n1,x\n1,2,y\n")
    _one(validate_series(path), path, "line 6")


def test_channel_count_differs_between_train_and_test(tmp_path, write_ts):
    write_ts(tmp_path / "Y_TRAIN.ts", "@classLabel true a", ["1,2:3,4:a"])
    test = write_ts(tmp_path / "Y_TEST.ts", "@classLabel true a", ["1,2:a"])
    _one(validate_series(tmp_path), test, "line 3")


def test_every_problem_is_listed_and_the_loader_refuses(tmp_path, write_ts):
    write_ts(tmp_path / "Z_TRAIN.ts", TS_HEADER, ["1,2,3:4,5,6:a", "1,2:4,5:b", "1,x,3:4,5,6:a"])
    (tmp_path / "Z_TEST.ts").write_text(TS_HEADER + "\n@data\n1,2,3:4,5,6:c\n")
    problems = validate_series(tmp_path)
    text = [str(p) for p in problems]
    assert len(problems) == 3, text
    assert any("Z_TRAIN.ts: line 9" in t for t in text)
    assert any("Z_TRAIN.ts: line 10" in t and "'x'" in t for t in text)
    assert any("Z_TEST.ts: line 8" in t and "'c'" in t for t in text)
    modality = TimeSeriesModality()
    assert [str(p) for p in modality.validate(tmp_path)] == text
    with pytest.raises(DataError) as err:
        modality.scan(tmp_path)
    assert err.value.problems == text
    assert "3 problem(s)" in str(err.value)


def test_missing_path_and_ambiguous_folder(tmp_path, write_tsv):
    _one(validate_series(tmp_path / "nothing"), tmp_path / "nothing", "does not exist")
    for name in ("A", "B"):
        write_tsv(tmp_path / f"{name}_TRAIN.tsv", [1, 2], np.ones((2, 3)))
    text = _one(validate_series(tmp_path), tmp_path, "several datasets")
    assert "A, B" in text
    assert validate_series(tmp_path / "A") == []


def test_text_column_in_a_wide_csv_is_one_problem(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("when,t0,t1\n2020-01-01,1,2\n2020-01-02,3,4\n2020-01-03,5,6\n")
    text = _one(validate_series(path), path, "column 'when'")
    assert "line 2" in text and "forecasting" in text
