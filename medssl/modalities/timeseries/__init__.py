"""Generic time series: UCR/UEA (.ts, .tsv, .arff), CSV and npy/npz readers, normalisation,
forecasting windows (ETT), validation, and the "timeseries" adapter.
"""

from medssl.modalities.timeseries.adapter import (
    ForecastSettings,
    SeriesDataset,
    TimeSeriesModality,
    TimeSeriesPreprocessing,
)
from medssl.modalities.timeseries.forecasting import ForecastWindows, split_bounds, steps_per_day
from medssl.modalities.timeseries.normalise import (
    ChannelStats,
    apply_channel_stats,
    fit_channel_stats,
    normalise,
    znormalise_series,
)
from medssl.modalities.timeseries.prepared import PreparedSeries
from medssl.modalities.timeseries.readers import CsvOptions, parse_file, read_series
from medssl.modalities.timeseries.series import SeriesSet
from medssl.modalities.timeseries.validate import validate_series

__all__ = [
    "ChannelStats",
    "CsvOptions",
    "ForecastSettings",
    "ForecastWindows",
    "PreparedSeries",
    "SeriesDataset",
    "SeriesSet",
    "TimeSeriesModality",
    "TimeSeriesPreprocessing",
    "apply_channel_stats",
    "fit_channel_stats",
    "normalise",
    "parse_file",
    "read_series",
    "split_bounds",
    "steps_per_day",
    "validate_series",
    "znormalise_series",
]
