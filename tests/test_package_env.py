"""Importing medssl shortens libgomp's spin-wait unless the user chose one: long-spinning threads
make a 2-core machine shared with another job many times slower."""

from __future__ import annotations

import os
import subprocess
import sys


def _spin_after_import(env: dict[str, str]) -> str:
    code = "import medssl, os; print(os.environ['GOMP_SPINCOUNT'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_import_sets_a_short_spin_and_keeps_an_explicit_choice() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    assert _spin_after_import(env) == "10000"
    assert _spin_after_import({**env, "GOMP_SPINCOUNT": "300000"}) == "300000"
