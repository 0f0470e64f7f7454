"""medssl: self-supervised contrastive pretraining and label-efficient fine-tuning for
medical scans and signals.

The Python API mirrors the `medssl` command:

    >>> import medssl
    >>> report = medssl.run("my_pipeline.yaml", overrides=["pretrain.epochs=5"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

# OpenMP threads that spin long while waiting for work (libgomp's default) turn a 2-core machine
# shared with one other job into a crawl: a demo pretraining step took 2.6 s instead of 0.25 s.
# A short spin keeps most of the idle-machine speed (200 demo fine-tuning steps x 3: 51 s against
# 43-45 s spinning long, 68-79 s with OMP_WAIT_POLICY=PASSIVE) and half of passive waiting's
# speed beside a busy job (4.3 against 7.8 fine-tuning steps per second). It must be
# set before torch loads its OpenMP runtime; OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the user win.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
__all__ = [
    "run",
    "pretrain",
    "finetune",
    "probe",
    "embed",
    "validate",
    "demo",
    "load_model",
    "reduce",
    "compare",
    "pair_reports",
]


def __getattr__(name: str) -> Any:
    # Keep `import medssl` cheap: torch, MONAI and Lightning load on first use.
    if name in ("run", "pretrain", "finetune", "probe", "validate", "load_model", "reduce", "compare"):
        from medssl.pipelines import api

        return getattr(api, name)
    if name == "embed":
        from medssl.pipelines.embed import embed

        return embed
    if name == "demo":
        from medssl.pipelines.demo import demo

        return demo
    if name == "pair_reports":
        from medssl.pipelines.report_pairing import build_report_pairing

        return build_report_pairing
    raise AttributeError(f"module 'medssl' has no attribute '{name}'")
