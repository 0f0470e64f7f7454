"""ECG/PPG: WFDB, CSV and npz records in physical units, resampling and filters, quality checks,
segments with participants and beat labels, and the "biosignal" adapter.
The record layer (signal, readers, filters, quality, validate) knows nothing of training.
"""

from medssl.modalities.biosignal.adapter import BiosignalModality, SegmentDataset
from medssl.modalities.biosignal.preprocessing import (
    BeatLabels,
    BiosignalPreprocessing,
    SourceSettings,
)
from medssl.modalities.biosignal.readers import ReadOptions, find_records, read_info, read_signal
from medssl.modalities.biosignal.signal import Annotations, Signal, SignalInfo

__all__ = [
    "Annotations",
    "BeatLabels",
    "BiosignalModality",
    "BiosignalPreprocessing",
    "ReadOptions",
    "SegmentDataset",
    "Signal",
    "SignalInfo",
    "SourceSettings",
    "find_records",
    "read_info",
    "read_signal",
]
