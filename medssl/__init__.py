"""medssl: self-supervised contrastive pretraining and label-efficient fine-tuning for
medical scans and signals.

The Python API mirrors the `medssl` command:

    >>> import medssl
    >>> report = medssl.run("my_pipeline.yaml", overrides=["pretrain.epochs=5"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

# OpenMP threads that spin while waiting for work (the default) turn a 2-core machine shared with
# one other job into a crawl: the demo's pretraining step took 2.6 s instead of 0.25 s that way.
# Passive waiting must be chosen before torch loads its OpenMP runtime; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
