"""Shared test fixtures: where the real data lives.

The real files sit outside the repository; `MEDSSL_TEST_DATA` overrides the default location.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

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


def _medssl_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real `medssl` command, run from `cwd` with this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("MEDSSL_LOG", None)
    return subprocess.run(
        [sys.executable, "-m", "medssl.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def medssl_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`medssl_cli(*args, cwd=folder)`: the real command in a subprocess."""
    return _medssl_cli
