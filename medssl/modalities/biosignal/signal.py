"""The in-memory form of one physiological record: samples in physical units with their rate,
lead names, units and beat annotations, and the header-only summary of a record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Annotations:
    """Labelled time points of a record (WFDB annotation file).

    samples: (n,) int64 sample indices at the signal's own rate.
    symbols: one WFDB annotation symbol per sample ("N", "A", "V", "+", ...).
    extension: the annotation file's extension ("atr", "qrs", ...).
    """

    samples: np.ndarray
    symbols: tuple[str, ...]
    extension: str

    def __post_init__(self) -> None:
        if len(self.samples) != len(self.symbols):
            raise ValueError(
                f"annotations have {len(self.samples)} samples but {len(self.symbols)} symbols"
            )


@dataclass
class Signal:
    """A multi-lead record, every lead at one rate.

    values: (C, T) float64 in physical units, NaN where a sample is missing.
    fs: sampling rate in Hz.
    leads: channel names as the file gives them (stripped), one per row of `values`.
    units: one physical unit per lead ("mV", "mmHg", "NU"), "" when unknown.
    source: the path that was read.
    annotations: beat / rhythm annotations at the rate `fs`, if the record has them.
    """

    values: np.ndarray
    fs: float
    leads: tuple[str, ...]
    units: tuple[str, ...]
    source: str
    annotations: Annotations | None = None

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise ValueError(f"values must be (C, T); got shape {self.values.shape}")
        if not self.fs > 0:
            raise ValueError(f"fs must be positive; got {self.fs}")
        if len(self.leads) != self.channels or len(self.units) != self.channels:
            raise ValueError(
                f"{self.channels} channels but {len(self.leads)} lead names "
                f"and {len(self.units)} units"
            )

    @property
    def channels(self) -> int:
        return int(self.values.shape[0])

    @property
    def samples(self) -> int:
        return int(self.values.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples / self.fs


@dataclass(frozen=True)
class SignalInfo:
    """What a record's header says, without reading its samples."""

    source: str
    fs: float
    leads: tuple[str, ...]
    units: tuple[str, ...]
    samples: int

    @property
    def duration(self) -> float:
        return self.samples / self.fs
