"""What `data.preprocessing` asks of the biosignal adapter (`BiosignalPreprocessing`, with its
`read` and `beats` sections) and what it yields for one record (`Cleaned`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medssl.modalities.biosignal.windows import NORMAL_BEATS, OTHER_BEATS


class SourceSettings(BaseModel):
    """`data.preprocessing.read`: how files without their own metadata are read (CSV / npz
    rate, npz key, raw-to-physical gain and baseline, unit, annotation extension)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fs: float | None = Field(None, gt=0)
    time_column: str | None = None
    npz_key: str | None = None
    gain: float = 1.0
    baseline: float = 0.0
    units: str = ""
    annotation: str | None = "atr"


class BeatLabels(BaseModel):
    """`data.preprocessing.beats`: windows centred on annotated beats, label 0 for `normal`
    symbols and 1 for `other` (AAMI N vs the rest by default); records without the
    annotation file keep fixed, unlabelled windows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    annotation: str = "atr"
    normal: tuple[str, ...] = NORMAL_BEATS
    other: tuple[str, ...] = OTHER_BEATS


class BiosignalPreprocessing(BaseModel):
    """`data.preprocessing` for ECG / PPG.

    fs: the rate every record is resampled to (polyphase), Hz.
    leads: channels kept, in order; an entry may list alternatives, "II|MLII|ECG", the first
        one a record has wins (case-insensitive). None keeps every channel of records that
        all share them.
    missing_leads: "error" (default) or "skip" records without the leads (logged).
    bandpass: (low, high) Hz of a zero-phase Butterworth filter (None on a side: one-sided);
        None switches it off. notch: a mains frequency to remove (50 or 60), or None.
    window_seconds / stride_seconds: segment length and step (stride defaults to the length).
    normalisation: "segment" z-scores each segment per lead (the paper), "none" keeps mV.
    reject_bad: drop segments touching flat or clipped runs (segments with NaN are always
        dropped); flat_seconds: how long an unchanged value must last to count as flat.
    beats: label segments from beat annotations (`BeatLabels`).
    split_by_time: (train, val, test) fractions of every record's duration; segments
        straddling a boundary are dropped, so no beat reaches two splits.
    read: `SourceSettings` for files without their own rate or units.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fs: float = Field(128.0, gt=0)
    leads: tuple[str, ...] | None = None
    missing_leads: Literal["error", "skip"] = "error"
    bandpass: tuple[float | None, float | None] | None = (0.5, 40.0)
    notch: float | None = Field(None, gt=0)
    window_seconds: float = Field(10.0, gt=0)
    stride_seconds: float | None = Field(None, gt=0)
    normalisation: Literal["segment", "none"] = "segment"
    reject_bad: bool = True
    flat_seconds: float = Field(1.0, gt=0)
    beats: BeatLabels | None = None
    split_by_time: tuple[float, float, float] | None = None
    read: SourceSettings = Field(default_factory=SourceSettings)

    @field_validator("split_by_time")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float] | None) -> Any:
        if value is not None and (min(value) < 0 or abs(sum(value) - 1) > 1e-6 or value[0] == 0):
            raise ValueError(f"split_by_time must be 3 fractions >= 0 summing to 1, got {value}")
        return value

    @model_validator(mode="after")
    def _band(self) -> BiosignalPreprocessing:
        if self.bandpass is not None:
            low, high = self.bandpass
            if high is not None and high >= self.fs / 2:
                raise ValueError(
                    f"bandpass high edge {high} Hz must lie below half of fs ({self.fs / 2} Hz)"
                )
            if low is not None and high is not None and low >= high:
                raise ValueError(f"bandpass low edge {low} must be below the high edge {high}")
        return self

    @property
    def window(self) -> int:
        return int(round(self.window_seconds * self.fs))

    @property
    def stride(self) -> int:
        return int(round((self.stride_seconds or self.window_seconds) * self.fs))


@dataclass
class Cleaned:
    """A record at the target rate: (C, T) float32 values and (T,) samples to avoid."""

    values: np.ndarray
    bad: np.ndarray
    leads: tuple[str, ...]
    units: tuple[str, ...]
