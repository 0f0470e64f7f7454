"""Reading one ECG/PPG record of any supported kind (WFDB, CSV, npz/npy) into a Signal in
physical units, and listing the records of a folder tree.
"""

from __future__ import annotations

import csv
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medssl.modalities.biosignal.signal import Signal, SignalInfo
from medssl.modalities.biosignal.wfdb_records import read_wfdb, read_wfdb_info, segment_names
from medssl.platform.errors import DataError

ARRAY_SUFFIXES = (".npz", ".npy")
_SKIPPED_PREFIXES = ("license", "readme", "copying", "notice")
# "time", "Time [s]", "timer", "timestamp", "time_ms", "t (ms)"; group 1 is the unit if given
_TIME_NAME = re.compile(
    r"^(?:time|timer|timestamp|t|elapsed)"
    r"(?:[\s_]*[\[(]?\s*(s|sec|secs|seconds|ms|msec|millis|milliseconds)\s*[\])]?)?$"
)
_RATE_NAME = re.compile(r"^(?:sampling[\s_]*(?:freq|frequency|rate)|sample[\s_]*rate|fs)\b")
_MISSING = {"", "nan", "na", "n/a", "null", "none"}


@dataclass(frozen=True)
class ReadOptions:
    """How to read files that do not describe themselves fully (CSV, npz).

    fs: rate in Hz of CSV/npz files that state none (no time or sampling-rate column).
    time_column: CSV time column; None detects one named time / "Time [s]" / timer / timestamp.
        Its unit is the one in its name ("[s]", "_ms", "(msec)"); without one, milliseconds
        when the median step is at least 1 (no ECG/PPG is sampled below 1 Hz), else seconds.
    npz_key: array to read from an npz; None takes the only array, else "ecg" or "signal".
    gain, baseline: raw CSV/npz values become physical units as (x - baseline) / gain.
    units: unit label given to every CSV/npz channel.
    annotation: WFDB annotation extension read when that file exists beside the header.
    """

    fs: float | None = None
    time_column: str | None = None
    npz_key: str | None = None
    gain: float = 1.0
    baseline: float = 0.0
    units: str = ""
    annotation: str | None = "atr"

    def __post_init__(self) -> None:
        if self.fs is not None and not self.fs > 0:
            raise ValueError(f"fs must be positive; got {self.fs}")
        if self.gain == 0:
            raise ValueError(f"gain must not be 0; got {self.gain}")


def find_records(folder: str | Path) -> list[str]:
    """Sorted record paths under `folder`: each WFDB record once as its .hea (segments of a
    multi-segment record are left to their master), every .csv that is not a manifest, every
    .npz/.npy, and every .dat with no header beside it that is an npz archive (scipy's ecg.dat).
    Licence/readme and annotation files are skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: is not a folder; give the folder that holds the records")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _skipped(p))
    segments = {
        hea.parent / f"{name}.hea"
        for hea in files
        if hea.suffix.lower() == ".hea"
        for name in segment_names(hea)
    }
    found = []
    for p in files:
        suffix = p.suffix.lower()
        if suffix == ".hea" and p not in segments:
            found.append(p)
        elif suffix == ".csv" and not is_manifest_csv(p):
            found.append(p)
        elif suffix in ARRAY_SUFFIXES:
            found.append(p)
        elif suffix == ".dat" and not p.with_suffix(".hea").is_file() and zipfile.is_zipfile(p):
            found.append(p)
    return [str(p) for p in found]


def read_info(path: str | Path, options: ReadOptions = ReadOptions()) -> SignalInfo:
    """Rate, leads, units and length of a record; cheap for WFDB (header only)."""
    hea = _wfdb_header(Path(path))
    if hea is not None:
        return read_wfdb_info(hea)
    signal = read_signal(path, options)
    return SignalInfo(signal.source, signal.fs, signal.leads, signal.units, signal.samples)


def read_signal(path: str | Path, options: ReadOptions = ReadOptions()) -> Signal:
    """The whole record at `path` in physical units. Raises DataError naming the file."""
    p = Path(path)
    hea = _wfdb_header(p)
    if hea is not None:
        return read_wfdb(hea, options.annotation)
    if not p.is_file():
        raise DataError(f"{p}: does not exist; check the path")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return read_csv(p, options)
    if suffix in ARRAY_SUFFIXES or (suffix == ".dat" and zipfile.is_zipfile(p)):
        return read_array(p, options)
    raise DataError(f"{p}: is not a supported record; give a WFDB .hea, a .csv, an .npz or an .npy")


def read_array(path: Path, options: ReadOptions) -> Signal:
    """An npz (or npz-in-.dat) array or an .npy, as (C, T) with the shorter axis as leads."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: is not a readable npz/npy array ({err}); re-save it") from err
    if isinstance(loaded, np.ndarray):
        key, array = path.stem, loaded
    else:
        with loaded:
            key = _npz_key(path, list(loaded.files), options.npz_key)
            array = loaded[key]
    if array.ndim not in (1, 2) or not np.issubdtype(array.dtype, np.number) or array.size == 0:
        raise DataError(
            f"{path}: array {key!r} has shape {array.shape} and dtype {array.dtype}; "
            "save a numeric (T,) or (C, T) array"
        )
    values = np.atleast_2d(array.astype(np.float64))
    if values.shape[0] > values.shape[1]:
        values = values.T  # saved as (T, C): records have more samples than leads
    leads = (key,) if len(values) == 1 else tuple(f"{key}_{i}" for i in range(len(values)))
    return _finish(values, _required_fs(path, options), leads, path, options)


def _npz_key(path: Path, keys: list[str], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in keys:
            raise DataError(f"{path}: has no array {wanted!r} (it holds {keys}); fix npz_key")
        return wanted
    if len(keys) == 1:
        return keys[0]
    for key in ("ecg", "signal"):
        if key in keys:
            return key
    raise DataError(f"{path}: holds arrays {keys}; set npz_key to the one to read")


def read_csv(path: Path, options: ReadOptions) -> Signal:
    """A table with one lead a column; see ReadOptions for the time and rate columns."""
    rows = _csv_rows(path)
    numeric_header = all(_is_number(cell) for cell in rows[0])
    names = [f"ch{i}" for i in range(len(rows[0]))] if numeric_header else _names(rows[0])
    first_line = 1 if numeric_header else 2
    body = rows if numeric_header else rows[1:]
    if not body:
        raise DataError(f"{path}: has a header but no data rows; export the samples too")
    for offset, row in enumerate(body):
        if len(row) != len(names):
            raise DataError(
                f"{path}: line {first_line + offset} has {len(row)} cells but the table has "
                f"{len(names)} columns; repair that line"
            )
    columns = list(zip(*body, strict=True))
    time_index = _time_index(path, names, options.time_column)
    rate_index = next((i for i, n in enumerate(names) if _RATE_NAME.match(n.lower())), None)
    leads = [i for i in range(len(names)) if i not in (time_index, rate_index)]
    if not leads:
        raise DataError(f"{path}: has no signal column besides time and rate; add the samples")
    values = np.stack([_numbers(path, names[i], columns[i], first_line) for i in leads])
    if time_index is not None:
        times = _numbers(path, names[time_index], columns[time_index], first_line)
        fs = _rate_from_times(path, names[time_index], times)
    elif rate_index is not None and _first_number(columns[rate_index]) is not None:
        fs = float(_first_number(columns[rate_index]) or 0.0)
    else:
        fs = _required_fs(path, options)
    return _finish(values, fs, tuple(names[i] for i in leads), path, options)


def _csv_rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: is not a readable CSV text file ({err}); re-export it") from err
    if not rows:
        raise DataError(f"{path}: is empty; export the record again")
    return rows


def _names(header: list[str]) -> list[str]:
    return [cell.strip() or f"ch{i}" for i, cell in enumerate(header)]


def _time_index(path: Path, names: list[str], wanted: str | None) -> int | None:
    if wanted is not None:
        stripped = wanted.strip()
        if stripped not in names:
            raise DataError(f"{path}: has no time column {wanted!r} (columns: {names})")
        return names.index(stripped)
    return next((i for i, n in enumerate(names) if _TIME_NAME.match(n.lower())), None)


def _numbers(path: Path, name: str, cells: tuple[str, ...], first_line: int) -> np.ndarray:
    cleaned = ["nan" if c.strip().lower() in _MISSING else c for c in cells]
    try:
        return np.array(cleaned, dtype=np.float64)
    except ValueError:
        bad = next(i for i, c in enumerate(cleaned) if not _is_number(c))
        raise DataError(
            f"{path}: line {first_line + bad} column {name!r} holds {cells[bad].strip()!r}, "
            "which is not a number; fix or empty that cell"
        ) from None


def _rate_from_times(path: Path, name: str, times: np.ndarray) -> float:
    steps = np.diff(times)
    if len(times) < 2 or np.isnan(times).any() or np.any(steps < 0) or times[-1] <= times[0]:
        raise DataError(f"{path}: time column {name!r} is not increasing; sort or repair it")
    unit = _TIME_NAME.match(name.lower())
    written = unit.group(1) if unit else None
    milliseconds = written in ("ms", "msec", "millis", "milliseconds") or (
        written is None and float(np.median(steps)) >= 1.0
    )
    step = (times[-1] - times[0]) / (len(times) - 1)
    # timestamps rounded on export (BIDMC keeps 2 decimals of 8 ms steps after 100 s) stray
    # by most of a step; a gap or drift of more than a whole step is not rounding
    if np.max(np.abs(times - (times[0] + step * np.arange(len(times))))) > step:
        raise DataError(
            f"{path}: time column {name!r} is not evenly spaced; resample the record to a "
            "fixed rate before reading it"
        )
    return float((1000.0 if milliseconds else 1.0) / step)


def _required_fs(path: Path, options: ReadOptions) -> float:
    if options.fs is None:
        raise DataError(
            f"{path}: states no sampling rate (no time or rate column); give it in Hz as "
            "data.preprocessing.read.fs, or per record in a manifest 'fs' column"
        )
    return float(options.fs)


def _finish(
    values: np.ndarray, fs: float, leads: tuple[str, ...], path: Path, options: ReadOptions
) -> Signal:
    physical = (values - options.baseline) / options.gain
    units = (options.units,) * len(leads)
    return Signal(np.ascontiguousarray(physical), fs, leads, units, str(path))


def _first_number(cells: tuple[str, ...]) -> float | None:
    for cell in cells:
        if cell.strip():
            return float(cell) if _is_number(cell) else None
    return None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell.strip().lower() in _MISSING
    return True


def is_manifest_csv(path: Path) -> bool:
    """A .csv whose header names subject_id and record: a manifest, not a record."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    names = {cell.strip().lower() for cell in header}
    return {"subject_id", "record"} <= names


def _skipped(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower().startswith(_SKIPPED_PREFIXES)


def _wfdb_header(path: Path) -> Path | None:
    """The header of a WFDB record given as its .hea, its signal file, or its bare name."""
    if path.suffix.lower() == ".hea":
        return path
    if path.suffix.lower() in (".csv", *ARRAY_SUFFIXES):
        return None
    for candidate in (path.with_suffix(".hea"), path.parent / f"{path.name}.hea"):
        if candidate.is_file():
            return candidate
    return None
