"""Shared test fixtures: where the real data lives.

The real files sit outside the repository; `MEDSSL_TEST_DATA` overrides the default location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: `<repo root>/../shared/data`, unless MEDSSL_TEST_DATA says otherwise.
_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_root() -> Path:
    """The real-data folder (it may not exist; the fixture skips then)."""
    return Path(os.environ.get("MEDSSL_TEST_DATA", str(_DEFAULT_DATA)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder, or a skip naming the variable to set when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real test data not found at {root}; set MEDSSL_TEST_DATA to its folder")
    return root
