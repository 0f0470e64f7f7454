"""WFDB records (.hea + .dat/.mat, multi-segment, annotations) read through the wfdb package,
and the structural check of a header against its signal files made before any sample is read.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.biosignal.signal import Annotations, Signal, SignalInfo
from medssl.platform.errors import DataError

#: Bits one sample takes in each WFDB storage format (310/311 pack 3 samples in 32 bits).
_BITS = {8: 8, 80: 8, 16: 16, 61: 16, 160: 16, 212: 12, 24: 24, 32: 32}
_PACKED_3_IN_32 = (310, 311)


def header_lines(hea: Path) -> list[str]:
    """The header's record and signal/segment lines, comments and blank lines dropped."""
    text = hea.read_text(encoding="latin-1")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def segment_names(hea: Path) -> list[str]:
    """Segment record names of a multi-segment header ("~" gaps left out), [] otherwise."""
    try:
        lines = header_lines(hea)
    except OSError:
        return []
    if not lines or "/" not in lines[0].split()[0]:
        return []
    return [line.split()[0] for line in lines[1:] if line.split()[0] != "~"]


def header_problem(hea: Path) -> str | None:
    """Why the record of `hea` cannot be read, checked from its header and the sizes of its
    signal files only (no sample is read), or None when it looks whole."""
    if not hea.is_file():
        return "does not exist; check the record path"
    try:
        lines = header_lines(hea)
    except OSError as err:
        return f"cannot be read ({err.strerror}); check the file's permissions"
    if not lines:
        return "has no record line; it is not a WFDB header"
    fields = lines[0].split()
    multi = "/" in fields[0]
    declared = fields[0].split("/", 1)[1] if multi else (fields[1] if len(fields) > 1 else "")
    if not declared.isdigit():
        return "has no signal count on its record line; write '<name> <signals> <fs> <samples>'"
    kind = "segment" if multi else "signal"
    if int(declared) != len(lines) - 1:
        return (
            f"declares {declared} {kind}s but has {len(lines) - 1} {kind} lines; "
            f"make the count on the record line match the {kind} lines"
        )
    try:
        header = _rdheader(hea)
    except Exception as err:  # wfdb raises many types on malformed text
        return f"is not a readable WFDB header ({type(err).__name__}: {err}); fix its text"
    if multi:
        return _segments_problem(hea, [line.split()[0] for line in lines[1:]])
    return _signal_files_problem(hea, header)


def _segments_problem(hea: Path, names: list[str]) -> str | None:
    for name in names:
        if name == "~":
            continue
        segment = hea.parent / f"{name}.hea"
        if not segment.is_file():
            return f"names segment {name}, whose header does not exist; put it beside the record"
        problem = header_problem(segment)
        if problem is not None:
            return f"segment {segment.name} {problem}"
    return None


def _signal_files_problem(hea: Path, header: Any) -> str | None:
    files: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name or []):
        if name and name != "~" and str(header.fmt[i]) != "0":
            files.setdefault(name, []).append(i)
    missing = [name for name in files if not (hea.parent / name).is_file()]
    if missing:
        verb = "does" if len(missing) == 1 else "do"
        return (
            f"names {', '.join(missing)}, which {verb} not exist; "
            "put the signal file beside its header"
        )
    if not header.sig_len:
        return None
    per_frame = header.samps_per_frame or [1] * header.n_sig
    offsets = header.byte_offset or [0] * header.n_sig
    for name, signals in files.items():
        fmt = int(header.fmt[signals[0]])
        frame = sum(int(per_frame[i] or 1) for i in signals)
        offset = int(offsets[signals[0]] or 0)
        needed = expected_bytes(fmt, header.sig_len * frame)
        if needed is None:
            continue
        actual = (hea.parent / name).stat().st_size
        if actual < offset + needed:
            return (
                f"{name} has {actual} bytes but {header.sig_len} samples x {len(signals)} "
                f"signals in format {fmt} need {offset + needed}; the file is truncated, "
                "copy it again from its source"
            )
    return None


def expected_bytes(fmt: int, samples: int) -> int | None:
    """Bytes `samples` values take in WFDB format `fmt`, or None for compressed (FLAC) formats
    whose size cannot be known from the header."""
    if fmt in _PACKED_3_IN_32:
        # a trailing partial group still takes whole bytes: 310 stores 1 or 2 leftovers in
        # 2 or 4 bytes, 311 in 2 or 3.
        tail = {0: 0, 1: 2, 2: 4 if fmt == 310 else 3}[samples % 3]
        return samples // 3 * 4 + tail
    bits = _BITS.get(fmt)
    return None if bits is None else math.ceil(samples * bits / 8)


def read_wfdb_info(hea: Path) -> SignalInfo:
    """Rate, leads, units and length from the header alone."""
    _raise_on_problem(hea)
    header = _rdheader(hea, segments=True)
    described = header
    if getattr(header, "segments", None):
        # multi-segment: names live in the layout segment (or the first one when fixed)
        described = next(s for s in header.segments if s is not None)
    leads = tuple(_names(described.sig_name, header.n_sig))
    return SignalInfo(
        source=str(hea),
        fs=float(header.fs),
        leads=leads,
        units=tuple(_units(described.units, len(leads))),
        samples=int(header.sig_len or 0),
    )


def read_wfdb(hea: Path, annotation: str | None = "atr") -> Signal:
    """Every lead in physical units. Leads stored at a multiple of the frame rate are averaged
    to one value per frame, so that every lead shares the record's rate `fs`; multi-segment
    records are stitched into one (NaN where a segment lacks a lead or is a gap)."""
    _raise_on_problem(hea)
    name = str(hea.with_suffix(""))
    try:
        record = _wfdb().rdrecord(name, physical=True, m2s=True, smooth_frames=False)
        values = _frame_averages(record)
    except Exception as err:
        raise DataError(
            f"{hea}: wfdb could not read its samples ({type(err).__name__}: {err}); "
            "check the header against its signal files"
        ) from err
    leads = tuple(_names(record.sig_name, values.shape[0]))
    return Signal(
        values=values,
        fs=float(record.fs),
        leads=leads,
        units=tuple(_units(record.units, len(leads))),
        source=str(hea),
        annotations=_annotations(hea, annotation),
    )


def _frame_averages(record: Any) -> np.ndarray:
    """(C, T) physical values at the frame rate; leads with several samples per frame are
    averaged in physical units (wfdb's own smoothing rounds to whole ADC steps)."""
    if getattr(record, "e_p_signal", None) is None:
        values = np.asarray(record.p_signal, dtype=np.float64)
        return np.ascontiguousarray(values.reshape(len(values), -1).T)
    per_frame = record.samps_per_frame or [1] * len(record.e_p_signal)
    leads = [
        np.asarray(lead, dtype=np.float64).reshape(-1, int(count or 1)).mean(axis=1)
        for lead, count in zip(record.e_p_signal, per_frame, strict=True)
    ]
    return np.ascontiguousarray(np.stack(leads))


def _annotations(hea: Path, extension: str | None) -> Annotations | None:
    if extension is None or not hea.with_suffix(f".{extension}").is_file():
        return None
    try:
        ann = _wfdb().rdann(str(hea.with_suffix("")), extension)
    except Exception as err:
        raise DataError(
            f"{hea.with_suffix('.' + extension)}: wfdb could not read these annotations "
            f"({type(err).__name__}: {err}); remove or replace the file"
        ) from err
    return Annotations(
        samples=np.asarray(ann.sample, dtype=np.int64),
        symbols=tuple(str(s) for s in ann.symbol),
        extension=extension,
    )


def _raise_on_problem(hea: Path) -> None:
    problem = header_problem(hea)
    if problem is not None:
        raise DataError(f"{hea}: {problem}")


def _rdheader(hea: Path, segments: bool = False) -> Any:
    return _wfdb().rdheader(str(hea.with_suffix("")), rd_segments=segments)


def _wfdb() -> Any:
    import wfdb  # imported on first use: it pulls in pandas and matplotlib

    return wfdb


def _names(names: list[str | None] | None, count: int) -> list[str]:
    given = list(names or [])
    return [(str(n).strip() if n else "") or f"ch{i}" for i, n in enumerate(given[:count])] + [
        f"ch{i}" for i in range(len(given), count)
    ]


def _units(units: list[str | None] | None, count: int) -> list[str]:
    given = [str(u).strip() if u else "" for u in (units or [])]
    return (given + [""] * count)[:count]
