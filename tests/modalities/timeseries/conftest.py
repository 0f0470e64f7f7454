"""Fixtures for the time-series tests: the real archive folder, and writers of small files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def ts_data(shared_data: Path) -> Path:
    """The real time-series folder (ucr/, uea/, ett/) of the shared test data."""
    root = shared_data / "timeseries"
    if not root.is_dir():
        pytest.skip(f"no timeseries folder in {shared_data}")
    return root


def data_lines(path: Path) -> list[str]:
    """The data rows of a .ts file, read the obvious way (everything after @data)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data")
    return [line for line in lines[start + 1 :] if line.strip()]


def write_ts(path: Path, header: str, rows: list[str]) -> Path:
    """A .ts file from header tags (one per line, without @data) and data rows."""
    path.write_text(header.strip() + "\n@data\n" + "\n".join(rows) + "\n")
    return path


def write_tsv(path: Path, labels: list[int], values: np.ndarray) -> Path:
    """A UCR .tsv: label, then the values of each row (NaN written as NaN)."""
    rows = [
        "\t".join([str(lab), *(repr(float(v)) for v in row)])
        for lab, row in zip(labels, values, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(name="data_lines")
def _data_lines():
    """`data_lines(path)`, see its docstring."""
    return data_lines


@pytest.fixture(name="write_ts")
def _write_ts():
    """`write_ts(path, header, rows)`, see its docstring."""
    return write_ts


@pytest.fixture(name="write_tsv")
def _write_tsv():
    """`write_tsv(path, labels, values)`, see its docstring."""
    return write_tsv
