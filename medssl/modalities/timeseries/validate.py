"""The dataset check of series data run before anything is prepared: every problem of every
file (with its line), at once; nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medssl.modalities.base import Problem
from medssl.modalities.timeseries.discovery import discover_files, parse_dataset
from medssl.modalities.timeseries.forecasting import read_forecast_table
from medssl.modalities.timeseries.readers import CsvOptions


def validate_series(path: str | Path, preprocessing: Any | None = None) -> list[Problem]:
    """Every problem of the series dataset at `path` (a file, a TRAIN/TEST folder or a
    `<folder>/<Name>` prefix): unreadable or empty files, ragged rows, headers that disagree
    with their rows, non-numeric cells, all-missing series, test labels the training file
    lacks, channel counts that differ between files. With `preprocessing.forecasting` set,
    the problems of the forecasting table instead.

    Example:
        >>> for problem in validate_series("data/ucr/Coffee"):  # doctest: +SKIP
        ...     print(problem)
    """
    settings = getattr(preprocessing, "forecasting", None)
    if settings is not None:
        table, problems = read_forecast_table(path, settings.date_column)
        if (
            table is not None
            and settings.mode == "univariate"
            and settings.target not in table.names
        ):
            problems.append(
                Problem(
                    str(path),
                    f"has no target column {settings.target!r}; columns: {list(table.names)}",
                )
            )
        return problems
    files, problems = discover_files(path)
    if not files:
        return problems
    options = None
    if preprocessing is not None:
        p = preprocessing
        options = CsvOptions(p.csv_layout, p.label_column, p.id_column, p.time_column)
    return problems + parse_dataset(files, options).problems
