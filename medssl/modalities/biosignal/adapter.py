"""The ECG/PPG adapter registered as "biosignal": records (WFDB, CSV, npz) -> chosen leads at one
rate, filtered -> segments with their participant, time and label, behind the `Modality` protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel
from torch.utils.data import Dataset

from medssl.modalities.base import Modality, Problem, Purpose, Record
from medssl.modalities.biosignal import filters
from medssl.modalities.biosignal.prepared import PreparedWindows, prepare_windows
from medssl.modalities.biosignal.preprocessing import BiosignalPreprocessing, Cleaned
from medssl.modalities.biosignal.quality import bad_samples, quality_issues
from medssl.modalities.biosignal.readers import ReadOptions, read_info, read_signal
from medssl.modalities.biosignal.sources import Source, pick_leads, read_sources
from medssl.modalities.biosignal.validate import summarise, validate_biosignal
from medssl.modalities.biosignal.windows import (
    beat_starts,
    clean_windows,
    fixed_starts,
    time_splits,
)
from medssl.platform.errors import DataError
from medssl.platform.registry import MODALITIES

log = logging.getLogger("medssl")
PURPOSES = ("pretrain", "classification", "embed", "evaluate")


@MODALITIES.register("biosignal")
class BiosignalModality(Modality):
    """ECG and PPG records cut into segments for participant-level pretraining and probes.

    A dataset is a folder of records (each its own participant), one record file, or a
    manifest mapping records to participants. `scan` reads every record once (rate, leads,
    bad runs and beat annotations decide which segments exist) and returns one `Record` per
    segment: subject_id = participant, label from beat annotations or the manifest, split
    from the manifest or `split_by_time`. Items are `{x (C, T) float32, subject (participant
    index), index, position (segment centre / record duration), fs, label}`.

    Example:
        >>> BiosignalModality({"fs": 100, "window_seconds": 5}).contract()["window"]
        500
    """

    name: ClassVar[str] = "biosignal"
    provides: ClassVar[frozenset[str]] = frozenset({"subject", "index", "position", "fs", "label"})
    default_encoder: ClassVar[str] = "efficientnet1d"
    Preprocessing: ClassVar[type[BaseModel]] = BiosignalPreprocessing

    preprocessing: BiosignalPreprocessing

    def __init__(self, preprocessing: Any = None, *, encoder_dims: int | None = None) -> None:
        super().__init__(preprocessing, encoder_dims=encoder_dims)
        self._cleaned: dict[str, Cleaned | None] = {}
        self._annotations: dict[str, Any] = {}
        self._rates: dict[str, float] = {}

    def read_options(self) -> ReadOptions:
        settings = self.preprocessing.read.model_dump()
        if self.preprocessing.beats is not None:
            settings["annotation"] = self.preprocessing.beats.annotation
        return ReadOptions(**settings)

    def clean(self, path: str, reading: Sequence[tuple[str, float]] = ()) -> Cleaned | None:
        """A record's chosen leads at the target rate, filtered, with its bad samples; None
        when it lacks the leads (the caller decides whether that is an error). Cached."""
        if path in self._cleaned:
            return self._cleaned[path]
        p = self.preprocessing
        signal = read_signal(path, replace(self.read_options(), **dict(reading)))
        channels = pick_leads(p.leads, signal.leads)
        if channels is None:
            self._cleaned[path] = None
            return None
        raw = signal.values[channels]
        chosen = replace(
            signal,
            values=raw,
            leads=tuple(signal.leads[c] for c in channels),
            units=tuple(signal.units[c] for c in channels),
        )
        for line in summarise(quality_issues(chosen, flat_seconds=p.flat_seconds)):
            log.info("%s: %s", path, line)
        bad_raw = bad_samples(raw, signal.fs, flat_seconds=p.flat_seconds).any(axis=0)
        if not p.reject_bad:
            bad_raw = np.isnan(raw).any(axis=0)
        values = raw if signal.fs == p.fs else filters.resample(raw, signal.fs, p.fs)
        if p.bandpass is not None:
            values = filters.bandpass(values, p.fs, p.bandpass[0], p.bandpass[1])
        if p.notch is not None:
            values = filters.notch(values, p.fs, p.notch)
        # A target sample is bad when any source sample it covers is.
        bad = bad_raw
        if signal.fs != p.fs:
            bad = filters.resampled_mask(bad_raw[None], signal.fs / p.fs, values.shape[1])[0]
        bad = bad | np.isnan(values).any(axis=0)
        cleaned = Cleaned(values.astype(np.float32), bad, chosen.leads, chosen.units)
        self._cleaned[path] = cleaned
        self._annotations[path] = signal.annotations
        self._rates[path] = signal.fs
        return cleaned

    def scan(self, path: str | Path) -> list[Record]:
        p = self.preprocessing
        sources = read_sources(path)
        missing = [s.path for s in sources if self.clean(s.path, s.reading) is None]
        if missing and p.missing_leads == "error":
            raise DataError(
                f"{path}: {len(missing)} record(s) lack the leads {list(p.leads or [])}; "
                "choose other data.preprocessing.leads or set missing_leads: skip",
                [f"{m}: has none of the leads {list(p.leads or [])}" for m in missing],
            )
        for m in missing:
            log.info("%s: skipped, it has none of the leads %s", m, list(p.leads or []))
        records: list[Record] = []
        for source in sources:
            if source.path not in missing:
                records += self._segments(source)
        if not records:
            raise DataError(
                f"{path}: no segment of {p.window_seconds} s survives (records too short, or "
                "every segment touches NaN, flat or clipped samples); lower "
                "data.preprocessing.window_seconds or set reject_bad: false"
            )
        return records

    def _segments(self, source: Source) -> list[Record]:
        p = self.preprocessing
        cleaned = self.clean(source.path)
        assert cleaned is not None
        samples = cleaned.values.shape[1]
        annotations = self._annotations.get(source.path)
        labels: np.ndarray | None = None
        if p.beats is not None and annotations is not None:
            starts, labels = beat_starts(
                annotations.samples,
                annotations.symbols,
                scale=p.fs / self._rates[source.path],
                length=p.window,
                samples=samples,
                normal=p.beats.normal,
                other=p.beats.other,
            )
        else:
            starts = fixed_starts(samples, p.window, p.stride)
        keep = clean_windows(starts, p.window, cleaned.bad)
        if p.split_by_time is not None and source.split is None:
            splits = time_splits(starts, p.window, samples, p.split_by_time)
            keep &= splits != ""
        else:
            splits = np.full(len(starts), source.split, dtype=object)
        dropped = int((~keep).sum())
        if dropped:
            log.info(
                "%s: %d of %d segments dropped (bad samples or split boundaries)",
                source.path,
                dropped,
                len(starts),
            )
        out = []
        for k in np.flatnonzero(keep):
            start = int(starts[k])
            label = source.label if labels is None else int(labels[k])
            out.append(
                Record(
                    subject_id=source.participant,
                    image=f"{source.path}#{start}",
                    label=label,
                    split=splits[k] or None,
                    extra={
                        "source": source.path,
                        "start": start,
                        "reading": source.reading,
                        "position": (start + p.window / 2) / samples,
                    },
                )
            )
        return out

    def validate(self, path: str | Path) -> list[Problem]:
        problems, warnings = validate_biosignal(path, self.read_options())
        for warning in warnings:
            log.warning("%s", warning)
        if problems or self.preprocessing.leads is None:
            return problems
        for source in read_sources(path):
            info = read_info(source.path, replace(self.read_options(), **dict(source.reading)))
            if pick_leads(self.preprocessing.leads, info.leads) is None:
                if self.preprocessing.missing_leads == "error":
                    problems.append(
                        Problem(
                            source.path,
                            f"has leads {list(info.leads)}, none of {list(self.preprocessing.leads)}; "
                            "choose other data.preprocessing.leads or set missing_leads: skip",
                        )
                    )
        return problems

    def prepare(self, records: Sequence[Record], cache_dir: str | Path) -> PreparedWindows:
        return prepare_windows(records, cache_dir, self.preprocessing, self.clean)

    def dataset(
        self, prepared: Any, indices: Sequence[int], purpose: Purpose, seed: int = 0
    ) -> Dataset:
        return SegmentDataset(prepared, indices, purpose)

    def contract(self) -> dict[str, Any]:
        p = self.preprocessing
        return {
            "fs": p.fs,
            "leads": list(p.leads) if p.leads is not None else None,
            "bandpass": list(p.bandpass) if p.bandpass is not None else None,
            "notch": p.notch,
            "window": p.window,
            "normalisation": p.normalisation,
            "layout": "(leads, samples)",
        }


class SegmentDataset(Dataset):
    """Items `{x, subject, index, position, fs, label}` of prepared segments; `label` only
    when every chosen segment has one (a float for regression targets)."""

    def __init__(self, prepared: PreparedWindows, indices: Sequence[int], purpose: str) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
        self.prepared = prepared
        self.indices = [int(i) for i in indices]
        labels = prepared.labels
        self._with_label = labels is not None and all(not np.isnan(labels[i]) for i in self.indices)
        if purpose == "classification" and not self._with_label:
            raise DataError(
                f"{prepared.root}: classification needs a label for every chosen segment; give "
                "the manifest a label column or set data.preprocessing.beats"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        i = self.indices[position]
        p = self.prepared
        item: dict[str, Any] = {
            "x": np.array(p.values[i], dtype=np.float32),
            "subject": np.int64(p.subjects[i]),
            "index": np.int64(i),
            "position": np.float32(p.positions[i]),
            "fs": np.float32(p.fs),
        }
        if self._with_label:
            value = p.labels[i]  # type: ignore[index]
            item["label"] = np.int64(value) if p.integer_labels else np.float32(value)
        return item
