"""Reading ECG/PPG records: every real file of physio/ against its header and against raw
bytes decoded here by hand; CSV/npz corner cases and multi-segment WFDB on small files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.biosignal.readers import (
    ReadOptions,
    find_records,
    read_info,
    read_signal,
)
from medssl.platform.errors import DataError


@pytest.fixture
def physio(shared_data: Path) -> Path:
    root = shared_data / "physio"
    if not root.is_dir():
        pytest.skip(f"no physio folder in {shared_data}")
    return root


def decode_212(raw: bytes) -> np.ndarray:
    """WFDB format 212, the slow obvious way: two 12-bit two's-complement samples in 3 bytes."""
    out = []
    for i in range(0, len(raw) - 2, 3):
        b0, b1, b2 = raw[i], raw[i + 1], raw[i + 2]
        for value in (b0 | ((b1 & 0x0F) << 8), b2 | ((b1 & 0xF0) << 4)):
            out.append(value - 4096 if value >= 2048 else value)
    return np.array(out, dtype=np.int64)


# ---------------------------------------------------------------- real records


@pytest.mark.integration
def test_find_records_lists_every_record_once(physio: Path) -> None:
    names = [str(Path(p).relative_to(physio)) for p in find_records(physio)]
    assert names == [
        "bidmc/bidmc_01_Signals.csv",
        "heartpy/data.csv",
        "heartpy/data2.csv",
        "scipy_ecg/ecg.dat",
        "wfdb/03700181.hea",
        "wfdb/100.hea",
        "wfdb/a103l.hea",
        "wfdb/s0010_re.hea",
        "wfdb/v102s.hea",
    ]


@pytest.mark.integration
def test_mitbih_100_values_and_beat_annotations(physio: Path) -> None:
    signal = read_signal(physio / "wfdb" / "100.hea")
    assert (signal.fs, signal.leads, signal.units) == (360.0, ("MLII", "V5"), ("mV", "mV"))
    assert signal.values.shape == (2, 650000)
    assert signal.duration == pytest.approx(650000 / 360)
    digital = decode_212((physio / "wfdb" / "100.dat").read_bytes()[:3000]).reshape(-1, 2).T
    np.testing.assert_allclose(signal.values[:, :1000], (digital - 1024) / 200.0)
    ann = signal.annotations
    assert ann is not None and ann.extension == "atr"
    counts = Counter(ann.symbols)
    assert len(ann.samples) == 2274 and counts["+"] == 1  # 2273 beats and one rhythm mark
    assert counts["N"] == 2239 and counts["A"] == 33 and counts["V"] == 1
    assert ann.samples.dtype == np.int64 and np.all(np.diff(ann.samples) > 0)
    assert ann.samples[-1] < signal.samples


@pytest.mark.integration
def test_ptb_record_reads_fifteen_leads_from_two_files(physio: Path) -> None:
    signal = read_signal(physio / "wfdb" / "s0010_re.hea")
    expected = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
    assert signal.leads == (*expected, "vx", "vy", "vz")
    assert signal.units == ("mV",) * 15 and signal.fs == 1000.0 and signal.samples == 38400
    assert signal.annotations is None
    xyz = np.frombuffer((physio / "wfdb" / "s0010_re.xyz").read_bytes(), dtype="<i2")
    np.testing.assert_allclose(signal.values[12:], xyz.reshape(-1, 3).T / 2000.0)


@pytest.mark.integration
def test_cinc_alarm_records_with_ppg(physio: Path) -> None:
    mat = read_signal(physio / "wfdb" / "a103l.hea")
    assert (mat.fs, mat.leads, mat.units) == (250.0, ("II", "V", "PLETH"), ("mV", "mV", "NU"))
    raw = np.frombuffer((physio / "wfdb" / "a103l.mat").read_bytes()[24:], dtype="<i2")
    gains = np.array([7247.0, 1.052e04, 1.253e04])[:, None]
    np.testing.assert_allclose(mat.values, raw.reshape(-1, 3).T / gains)
    v102 = read_signal(physio / "wfdb" / "v102s.hea")
    assert v102.leads == ("II", "V", "PLETH", "RESP") and v102.units == ("mV", "mV", "NU", "NU")
    assert v102.samples == 75000 and v102.fs == 250.0
    digital = decode_212((physio / "wfdb" / "v102s.dat").read_bytes()).reshape(-1, 4).T
    # -2048 is WFDB's "no sample" code in format 212
    np.testing.assert_array_equal(np.isnan(v102.values), digital == -2048)
    assert np.isnan(v102.values[2]).sum() == 17


@pytest.mark.integration
def test_multi_frequency_record_with_skew(physio: Path) -> None:
    signal = read_signal(physio / "wfdb" / "03700181.hea")
    assert signal.leads == ("MCL1", "ABP", "RESP") and signal.units == ("mV", "mmHg", "mV")
    assert signal.fs == 125.0 and signal.samples == 75000
    frames = decode_212((physio / "wfdb" / "03700181.dat").read_bytes()).reshape(-1, 6)
    np.testing.assert_allclose(signal.values[0], frames[:, :4].mean(axis=1) / 2963.77)
    np.testing.assert_allclose(signal.values[1], (frames[:, 4] + 1605) / 12.84)
    np.testing.assert_allclose(signal.values[2, :-4], frames[4:, 5] / 2000.0)  # skew 4
    assert np.isnan(signal.values[2, -4:]).all()


@pytest.mark.integration
def test_bidmc_csv_with_rate_and_time_columns(physio: Path) -> None:
    signal = read_signal(physio / "bidmc" / "bidmc_01_Signals.csv")
    assert signal.fs == pytest.approx(125.0) and signal.samples == 60001
    assert signal.leads == ("RESP", "PLETH", "V", "AVR", "II") and signal.units == ("",) * 5
    np.testing.assert_allclose(signal.values[:, 0], [0.35386, 0.43597, 0.52549, 0.30392, 0.72549])
    np.testing.assert_allclose(signal.values[:, -1], [0.13783, 0.40274, 0.49412, 0.53529, 0.38039])


@pytest.mark.integration
def test_heartpy_csv_without_rate_needs_it(physio: Path) -> None:
    path = physio / "heartpy" / "data.csv"
    with pytest.raises(DataError, match=r"data\.csv.*data\.preprocessing\.read\.fs"):
        read_signal(path)
    signal = read_signal(path, ReadOptions(fs=100))
    assert signal.fs == 100.0 and signal.samples == 2483 and signal.leads == ("ch0",)
    assert signal.values[0, :3].tolist() == [530.0, 518.0, 506.0]


@pytest.mark.integration
def test_heartpy_rate_from_millisecond_timer(physio: Path) -> None:
    signal = read_signal(physio / "heartpy" / "data2.csv")
    lines = (physio / "heartpy" / "data2.csv").read_text().splitlines()[1:]
    first, last = float(lines[0].split(",")[0]), float(lines[-1].split(",")[0])
    assert signal.fs == pytest.approx(1000 * (len(lines) - 1) / (last - first))
    assert 116.9 < signal.fs < 117.1 and signal.leads == ("hr",) and signal.samples == 15000


@pytest.mark.integration
def test_scipy_ecg_npz_in_dat(physio: Path) -> None:
    options = ReadOptions(fs=360, gain=200, baseline=1024, units="mV")
    signal = read_signal(physio / "scipy_ecg" / "ecg.dat", options)
    assert signal.leads == ("ecg",) and signal.units == ("mV",) and signal.fs == 360.0
    assert signal.duration == pytest.approx(300.0)
    assert np.abs(signal.values).max() < 5.0 and np.abs(np.median(signal.values)) < 0.5


@pytest.mark.integration
def test_read_info_matches_the_full_read(physio: Path) -> None:
    for name in ("100.hea", "s0010_re.hea", "a103l.hea", "v102s.hea", "03700181.hea"):
        info = read_info(physio / "wfdb" / name)
        signal = read_signal(physio / "wfdb" / name)
        assert (info.fs, info.leads, info.units, info.samples) == (
            signal.fs,
            signal.leads,
            signal.units,
            signal.samples,
        )


# ---------------------------------------------------------------- synthetic files


def test_csv_bad_cell_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    path.write_text("time,ECG\n0,1.0\n0.01,abc\n0.02,2.0\n")
    with pytest.raises(DataError, match=r"line 3 column 'ECG' holds 'abc'"):
        read_signal(path)


def test_csv_ragged_line_and_empty_cells(tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    with pytest.raises(DataError, match="line 3 has 1 cells"):
        read_signal(ragged, ReadOptions(fs=10))
    gaps = tmp_path / "gaps.csv"
    gaps.write_text(" a , b\n1,2\n,4\n5,NaN\n")
    signal = read_signal(gaps, ReadOptions(fs=10, gain=2.0, baseline=1.0, units="mV"))
    assert signal.leads == ("a", "b") and signal.units == ("mV", "mV")
    np.testing.assert_array_equal(signal.values, [[0, np.nan, 2], [0.5, 1.5, np.nan]])


@pytest.mark.parametrize(
    ("name", "step", "fs"),
    [("time_ms", 4.0, 250.0), ("Time [s]", 0.004, 250.0), ("timestamp", 2.0, 500.0)],
)
def test_csv_time_column_units(tmp_path: Path, name: str, step: float, fs: float) -> None:
    path = tmp_path / "rec.csv"
    rows = "\n".join(f"{i * step},{i}" for i in range(50))
    path.write_text(f"{name},x\n{rows}\n")
    signal = read_signal(path)
    assert signal.fs == pytest.approx(fs) and signal.leads == ("x",)


def test_csv_uneven_time_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    times = [0, 1, 2, 3, 10, 11]
    path.write_text("time_s,x\n" + "\n".join(f"{t},{t}" for t in times) + "\n")
    with pytest.raises(DataError, match="not evenly spaced"):
        read_signal(path)


def test_npz_key_choice_and_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rec.npz"
    data = np.arange(30, dtype=np.int16).reshape(10, 3)  # (T, C)
    np.savez(path, first=data, second=data)
    with pytest.raises(DataError, match="set npz_key"):
        read_signal(path, ReadOptions(fs=50))
    signal = read_signal(path, ReadOptions(fs=50, npz_key="second"))
    assert signal.values.shape == (3, 10) and signal.leads == ("second_0", "second_1", "second_2")
    np.testing.assert_array_equal(signal.values, data.T)
    np.save(tmp_path / "lead.npy", np.ones(7))
    assert read_signal(tmp_path / "lead.npy", ReadOptions(fs=1)).leads == ("lead",)


def _write_wfdb(folder: Path, name: str, values: np.ndarray, leads: list[str]) -> None:
    import wfdb

    wfdb.wrsamp(
        name,
        fs=100,
        units=["mV"] * len(leads),
        sig_name=leads,
        p_signal=values,
        fmt=["16"] * len(leads),
        adc_gain=[1000.0] * len(leads),
        baseline=[0] * len(leads),
        write_dir=str(folder),
    )


def test_multi_segment_record_is_stitched(tmp_path: Path) -> None:
    first = np.stack([np.linspace(0, 1, 30), np.linspace(1, 0, 30)], axis=1)
    second = np.stack([np.full(20, 0.5), np.full(20, -0.5)], axis=1)
    _write_wfdb(tmp_path, "seg_1", first, ["II", "V1"])
    _write_wfdb(tmp_path, "seg_2", second, ["II", "V1"])
    (tmp_path / "multi.hea").write_text("multi/2 2 100 50\nseg_1 30\nseg_2 20\n")
    assert find_records(tmp_path) == [str(tmp_path / "multi.hea")]
    signal = read_signal(tmp_path / "multi.hea")
    assert signal.leads == ("II", "V1") and signal.fs == 100.0 and signal.samples == 50
    np.testing.assert_allclose(signal.values, np.concatenate([first, second]).T, atol=1e-3)
    assert read_info(tmp_path / "multi.hea").leads == ("II", "V1")
    (tmp_path / "seg_2.dat").unlink()
    with pytest.raises(DataError, match="segment seg_2.hea names seg_2.dat, which does not"):
        read_signal(tmp_path / "multi.hea")


def test_missing_signal_file_is_one_sentence(tmp_path: Path) -> None:
    _write_wfdb(tmp_path, "r1", np.zeros((10, 1)), ["II"])
    (tmp_path / "r1.dat").unlink()
    with pytest.raises(DataError) as caught:
        read_signal(tmp_path / "r1.hea")
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "r1.hea"))
    assert "names r1.dat, which does not exist; put the signal file beside its header" in message
    assert "\n" not in message


def test_unsupported_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match="not a supported record"):
        read_signal(path)


def test_read_options_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="-5"):
        ReadOptions(fs=-5)
    with pytest.raises(ValueError, match="gain"):
        ReadOptions(gain=0)
