"""Forecasting windows: the split follows the sampling rate, statistics come from training rows
only, and no training or validation target ever reaches a later row (marker values planted
after each boundary never show up)."""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pytest

from medssl.modalities.timeseries import TimeSeriesModality
from medssl.modalities.timeseries.forecasting import (
    ForecastWindows,
    calendar_features,
    split_bounds,
    steps_per_day,
)
from medssl.platform.errors import DataError
from medssl.platform.evaluation.timeseries_protocols import forecast_samples

MARKER = 1000.0


def write_table(path, n_rows, step=dt.timedelta(days=1), ot=None, start=dt.datetime(2020, 1, 1)):
    rows = np.arange(n_rows)
    ot = np.sin(rows / 7.0) if ot is None else ot
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "a", "OT"])
        for r in rows:
            w.writerow(
                [
                    (start + r * step).isoformat(sep=" "),
                    repr(float(np.cos(r / 5.0))),
                    repr(float(ot[r])),
                ]
            )
    return path


def test_split_bounds_follow_the_sampling_rate():
    hourly, rule = split_bounds(17420, 24)
    assert rule == "months"
    assert [(s.start, s.stop) for s in hourly.values()] == [
        (0, 8640),
        (8640, 11520),
        (11520, 14400),
    ]
    quarter, _ = split_bounds(69680, 96)
    assert quarter["test"] == slice(46080, 57600)
    fractions, rule = split_bounds(1000, None)
    assert rule == "fractions"
    assert [(s.start, s.stop) for s in fractions.values()] == [(0, 600), (600, 800), (800, 1000)]
    assert split_bounds(5000, 24)[1] == "fractions"  # too short for 20 months of hours


def test_steps_per_day_from_dates():
    start = np.datetime64("2020-01-01T00:00:00")
    assert steps_per_day(start + np.arange(50) * np.timedelta64(1, "h")) == 24
    assert steps_per_day(start + np.arange(50) * np.timedelta64(15, "m")) == 96
    assert steps_per_day(start + np.arange(50) * np.timedelta64(7, "D")) is None
    assert steps_per_day(None) is None


def test_calendar_features_match_datetime():
    start = dt.datetime(2020, 12, 27, 5, 0)
    stamps = [start + k * dt.timedelta(minutes=437) for k in range(60)]
    got = calendar_features(np.array([s.isoformat() for s in stamps], dtype="datetime64[s]"))
    want = [
        [s.minute, s.hour, s.weekday(), s.day, s.timetuple().tm_yday, s.month, s.isocalendar()[1]]
        for s in stamps
    ]
    np.testing.assert_array_equal(got, np.array(want, dtype=float))


@pytest.mark.parametrize("boundary_split", ["train", "val"])
@pytest.mark.parametrize("mode", ["univariate", "multivariate"])
def test_no_target_reaches_past_its_split(tmp_path, boundary_split, mode):
    base = np.sin(np.arange(600) / 7.0)
    ot = base.copy()
    boundary = 360 if boundary_split == "train" else 480  # daily data: 12 / 4 / 4 months
    ot[boundary:] = MARKER
    windows = ForecastWindows(write_table(tmp_path / "t.csv", 600, ot=ot), mode=mode)
    assert windows.splits[boundary_split].stop == boundary
    column = windows.variables.index("OT")
    for horizon in (1, 5, 30):
        t, target_rows = windows.pairs(boundary_split, horizon)
        assert len(t) == 120 - horizon if boundary_split == "val" else 360 - horizon
        targets = windows.denormalise(windows.targets[target_rows])[..., column]
        assert targets.max() < 2.0, "a target window reached a row after the split boundary"
        assert target_rows.max() == boundary - 1  # the last row of the split is still used
        inputs, split_targets = windows.segment(boundary_split)
        _, y = forecast_samples(inputs, split_targets, horizon)
        y = y.reshape(-1, horizon, len(windows.variables))[..., column]
        assert (y * windows.stats.std[column] + windows.stats.mean[column]).max() < 2.0
    if boundary_split == "train":  # the marker rows must not move the statistics either
        np.testing.assert_allclose(windows.stats.mean[column], base[:360].mean(), rtol=1e-9)


def test_inputs_hold_covariates_then_variables(tmp_path):
    path = write_table(tmp_path / "t.csv", 600)
    uni = ForecastWindows(path)
    multi = ForecastWindows(path, mode="multivariate", time_features=False)
    assert uni.inputs.shape == (600, 8) and uni.targets.shape == (600, 1)
    assert multi.inputs.shape == (600, 2) and multi.variables == ("a", "OT")
    np.testing.assert_array_equal(uni.targets[:, 0], multi.targets[:, 1])
    assert uni.encoder_input().shape == (1, 8, 600)
    np.testing.assert_array_equal(uni.encoder_input()[0, 7], uni.targets[:, 0])
    train = uni.inputs[:360].astype(np.float64)
    np.testing.assert_allclose(train[:, 1:].mean(axis=0), 0, atol=1e-6)  # minute is constant


@pytest.mark.integration
def test_etth2_protocol_split(ts_data):
    path = ts_data / "ett" / "ETTh2.csv"
    with path.open() as f:
        raw = np.array([float(row["OT"]) for row in csv.DictReader(f)])
    windows = ForecastWindows(path, target="OT", mode="univariate")
    assert windows.steps_per_day == 24 and windows.split_rule == "months"
    assert windows.splits == {
        "train": slice(0, 8640),
        "val": slice(8640, 11520),
        "test": slice(11520, 14400),
    }
    assert windows.inputs.shape == (14400, 8)
    np.testing.assert_allclose(windows.stats.mean, [raw[:8640].mean()], rtol=1e-9)
    np.testing.assert_allclose(windows.stats.std, [raw[:8640].std()], rtol=1e-9)
    np.testing.assert_allclose(windows.denormalise(windows.targets[:3])[:, 0], raw[:3], rtol=1e-5)
    records = TimeSeriesModality({"forecasting": {"mode": "multivariate"}}).scan(path)
    spans = [(r.split, r.extra["start"], r.extra["stop"]) for r in records]
    assert spans == [
        ("train", 0, 4320),
        ("train", 4320, 8640),
        ("val", 8640, 11520),
        ("test", 11520, 14400),
    ]


def test_malformed_forecast_tables(tmp_path):
    path = write_table(tmp_path / "bad.csv", 40)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",oops"
    lines[6], lines[7] = lines[7], lines[6]
    path.write_text("\n".join(lines) + "\n")
    modality = TimeSeriesModality({"forecasting": {}})
    problems = [str(p) for p in modality.validate(path)]
    assert len(problems) == 2, problems
    assert problems[0].startswith(str(path)) and "line 4 column 'OT'" in problems[0]
    assert "line 8" in problems[1] and "does not increase" in problems[1]
    with pytest.raises(DataError):
        modality.scan(path)
    good = write_table(tmp_path / "good.csv", 40)
    problems = TimeSeriesModality({"forecasting": {"target": "load"}}).validate(good)
    assert len(problems) == 1 and "'load'" in problems[0].message
    with pytest.raises(DataError, match="load"):
        ForecastWindows(good, target="load")
