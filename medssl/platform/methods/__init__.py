"""Self-supervised methods: views -> encoders -> losses; each declares what it needs.

Importing this package fills the METHODS registry.
"""

from __future__ import annotations

from medssl.platform.methods import simclr  # noqa: F401  (registers simclr, dcl)
from medssl.platform.methods.base import Method
from medssl.platform.methods.simclr import DCL, SimCLR

__all__ = ["DCL", "Method", "SimCLR"]
