"""ECG windows for synthetic X-ray + ECG + report triplets: a beat-annotated WFDB record cut
into 10-s windows at 100 Hz, each marked abnormal (a non-normal beat inside) or normal, and
drawn for the pairs of each label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medssl.platform.errors import DataError

ECG_FILE = "ecg.npz"

#: WFDB beat annotation symbols (the rest, e.g. "+" rhythm, "~" noise, "|" artefact, mark
#: no beat). "N" is a normal beat; every other beat symbol is a non-normal one.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
#: The ECG rule in words, as pairing.json records it.
ECG_RULE_TEXT = (
    "10-s windows every 1 s (neighbours share 9 s), resampled to 100 Hz (polyphase) and "
    "z-scored per lead and window; a window with at least one non-normal beat annotation (a "
    "WFDB beat symbol other than N) goes with positive pairs, one whose beats are all N with "
    "negative pairs; non-beat annotations (+ ~ | ...) are ignored, a window without beats is "
    "unused; a kind that runs out is drawn again in a new shuffled order (ecg_reused_* counts "
    "those draws) and its pairs share the window's ecg.npz row. ecg.npz: ecg (K, leads, 1000) "
    "float32, fs, leads, start_s (window start in the record, s), abnormal (window kind)"
)


@dataclass(frozen=True)
class EcgWindows:
    """Every window of a record, cut, resampled and z-scored per lead.

    segments: (W, leads, fs * seconds) float32.
    abnormal: (W,) bool, a non-normal beat inside; normal: (W,) bool, only "N" beats inside
        (a window with no beat is neither).
    start_s: (W,) window starts in seconds; leads: lead names; fs: the output rate.
    """

    segments: np.ndarray
    abnormal: np.ndarray
    normal: np.ndarray
    start_s: np.ndarray
    leads: tuple[str, ...]
    fs: float


def ecg_windows(
    record: str | Path, *, seconds: float = 10.0, hop_s: float = 1.0, fs_out: float = 100.0
) -> EcgWindows:
    """Cut a beat-annotated WFDB record into overlapping windows at `fs_out`.

    Args:
        record: the record path without extension (its .hea, signal file and .atr beside).
        seconds: window length; hop_s: step between window starts.
        fs_out: output rate (the whole record is resampled once, polyphase).

    Returns:
        EcgWindows; windows with a missing (NaN) sample are left out.

    Raises:
        DataError: the record cannot be read, has no .atr beat annotations, or is shorter
            than one window.
    """
    from medssl.modalities.biosignal.filters import resample, zscore
    from medssl.modalities.biosignal.readers import read_signal
    from medssl.modalities.biosignal.windows import fixed_starts

    signal = read_signal(record)
    if signal.annotations is None:
        raise DataError(f"{record}: has no beat annotations (.atr); give an annotated record")
    values = resample(signal.values, signal.fs, fs_out)
    length_out = round(seconds * fs_out)
    starts = fixed_starts(values.shape[1], length_out, max(round(hop_s * fs_out), 1))
    if len(starts) == 0:
        raise DataError(f"{record}: is shorter than one {seconds:g}-s window")
    segments = np.stack([values[:, s : s + length_out] for s in starts])
    kept = np.isfinite(segments).all(axis=(1, 2))
    segments, starts = segments[kept], starts[kept]
    scale = signal.fs / fs_out
    abnormal, normal = _beat_kinds(
        signal.annotations.samples,
        signal.annotations.symbols,
        np.round(starts * scale).astype(np.int64),
        round(length_out * scale),
    )
    return EcgWindows(
        segments=np.stack([zscore(s) for s in segments]).astype(np.float32),
        abnormal=abnormal,
        normal=normal,
        start_s=starts / fs_out,
        leads=signal.leads,
        fs=fs_out,
    )


def _beat_kinds(
    samples: np.ndarray, symbols: tuple[str, ...], starts: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """(abnormal, normal) per window [start, start + length): a non-normal beat inside, or
    beats that are all "N"."""
    is_beat = np.array([s in BEAT_SYMBOLS for s in symbols], dtype=bool)
    is_other = is_beat & np.array([s != "N" for s in symbols], dtype=bool)
    order = np.argsort(samples, kind="stable")
    samples, is_beat, is_other = samples[order], is_beat[order], is_other[order]
    beats_before = np.concatenate([[0], np.cumsum(is_beat)])
    others_before = np.concatenate([[0], np.cumsum(is_other)])
    lo = np.searchsorted(samples, starts, side="left")
    hi = np.searchsorted(samples, starts + length, side="left")
    beats, others = beats_before[hi] - beats_before[lo], others_before[hi] - others_before[lo]
    return others > 0, (beats > 0) & (others == 0)


@dataclass(frozen=True)
class EcgPlan:
    """The windows chosen for the pairs: pair i gets row rows[i] of arrays["ecg"]; counts
    are PairingSummary's ecg_* fields; document is pairing.json's "ecg" entry."""

    rows: list[int]
    arrays: dict[str, np.ndarray]
    counts: dict[str, int]
    document: dict[str, Any]


def plan_ecg(record: str | Path, labels: list[int], rng: np.random.Generator) -> EcgPlan:
    """Abnormal windows for label-1 pairs, normal ones for label-0 pairs, drawn by a seeded
    shuffle; a kind that runs out is drawn again in a new shuffled order (counted as reuse)."""
    windows = ecg_windows(record)
    kinds = {1: np.flatnonzero(windows.abnormal), 0: np.flatnonzero(windows.normal)}
    drawn, reused = {}, {}
    for label, kind in ((1, "abnormal"), (0, "normal")):
        needed, available = labels.count(label), kinds[label]
        if needed and not len(available):
            raise DataError(f"{record}: has no {kind} window for the label-{label} pairs")
        rounds = -(-needed // max(len(available), 1))  # ceil: whole reshuffles, then cut
        drawn[label] = iter([w for _ in range(rounds) for w in rng.permutation(available)])
        reused[label] = max(needed - len(available), 0)
    chosen = [next(drawn[label]) for label in labels]
    used = sorted(set(chosen))  # a reused window is written once; its pairs share its row
    row_of = {window: k for k, window in enumerate(used)}
    arrays = {
        "ecg": windows.segments[used],
        "fs": np.asarray(windows.fs),
        "leads": np.asarray(windows.leads),
        "start_s": windows.start_s[used],
        "abnormal": windows.abnormal[used],
    }
    counts = {
        "ecg_windows_abnormal": len(kinds[1]),
        "ecg_windows_normal": len(kinds[0]),
        "ecg_reused_abnormal": reused[1],
        "ecg_reused_normal": reused[0],
    }
    document = {
        "file": ECG_FILE,
        "record": str(record),
        "note": "synthetic: every window comes from this one record (one patient), unrelated "
        "to the image and the report it is paired with",
        "rule": ECG_RULE_TEXT,
        "fs": windows.fs,
        "leads": list(windows.leads),
        "windows_in_record": {
            "abnormal": len(kinds[1]),
            "normal": len(kinds[0]),
            "total": len(windows.abnormal),
        },
        "windows_written": len(used),
        "reused": {"abnormal": reused[1], "normal": reused[0]},
    }
    return EcgPlan([row_of[w] for w in chosen], arrays, counts, document)
