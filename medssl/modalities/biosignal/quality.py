"""Signal-quality checks of a record: missing (NaN) runs, flat leads (electrode off) and
clipped runs (amplifier saturation), each located in time on its lead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medssl.modalities.biosignal.signal import Signal

KINDS = ("nan", "flat", "clipped")


@dataclass(frozen=True)
class QualityIssue:
    """One bad stretch of one lead: `kind` is "nan", "flat" or "clipped"; `start` and `stop`
    are in seconds from the record's start (stop is the end of the last bad sample)."""

    lead: str
    kind: str
    start: float
    stop: float

    def __str__(self) -> str:
        return f"lead {self.lead}: {self.kind} from {_seconds(self.start)} s to {_seconds(self.stop)} s"


def bad_samples(
    values: np.ndarray, fs: float, *, flat_seconds: float = 1.0, clip_run: int = 5
) -> np.ndarray:
    """(C, T) bool: True inside a NaN sample, a flat run (an unchanged value held for at least
    `flat_seconds`), or a run of at least `clip_run` consecutive samples at the lead's global
    minimum or maximum."""
    masks = kind_masks(values, fs, flat_seconds=flat_seconds, clip_run=clip_run)
    return masks["nan"] | masks["flat"] | masks["clipped"]


def kind_masks(
    values: np.ndarray, fs: float, *, flat_seconds: float = 1.0, clip_run: int = 5
) -> dict[str, np.ndarray]:
    """The (C, T) masks behind `bad_samples`, one per kind. A clipped run that is also flat is
    reported as flat only: a lead stuck at one value is the flat fault."""
    if not fs > 0:
        raise ValueError(f"fs must be positive; got {fs}")
    if not flat_seconds > 0:
        raise ValueError(f"flat_seconds must be positive; got {flat_seconds}")
    if clip_run < 1:
        raise ValueError(f"clip_run must be at least 1; got {clip_run}")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"values must be (C, T); got shape {x.shape}")
    nan = ~np.isfinite(x)
    flat = np.zeros_like(nan)
    clipped = np.zeros_like(nan)
    flat_samples = max(2, int(np.ceil(flat_seconds * fs - 1e-9)))
    for c, lead in enumerate(x):
        for start, stop in _plateaus(lead):
            if stop - start >= flat_samples:
                flat[c, start:stop] = True
        if (~nan[c]).any():
            low, high = np.nanmin(lead), np.nanmax(lead)
            for extreme in (low, high):
                for start, stop in _runs(lead == extreme):
                    if stop - start >= clip_run:
                        clipped[c, start:stop] = True
    return {"nan": nan, "flat": flat, "clipped": clipped & ~flat}


def quality_issues(
    signal: Signal, *, flat_seconds: float = 1.0, clip_run: int = 5
) -> list[QualityIssue]:
    """Every bad run of every lead, in lead order then time order; touching runs of one kind
    are one issue."""
    masks = kind_masks(signal.values, signal.fs, flat_seconds=flat_seconds, clip_run=clip_run)
    issues = []
    for c, lead in enumerate(signal.leads):
        found = [
            QualityIssue(lead, kind, start / signal.fs, stop / signal.fs)
            for kind in KINDS
            for start, stop in _runs(masks[kind][c])
        ]
        issues += sorted(found, key=lambda issue: (issue.start, KINDS.index(issue.kind)))
    return issues


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index pairs of the True runs of a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def _plateaus(lead: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of one repeated value (NaN never equals itself, so a NaN
    run is no plateau)."""
    changes = np.flatnonzero(lead[1:] != lead[:-1]) + 1
    starts = np.concatenate([[0], changes]).tolist()
    stops = np.concatenate([changes, [len(lead)]]).tolist()
    return list(zip(starts, stops, strict=True))


def _seconds(value: float) -> str:
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
