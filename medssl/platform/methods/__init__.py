"""Self-supervised methods: views -> encoders -> losses; each declares what it needs.

Importing this package fills the METHODS registry.
"""

from __future__ import annotations

from medssl.platform.methods import (
    autotcl,  # noqa: F401  (registers autotcl)
    convirt,  # noqa: F401  (registers convirt)
    global_local,  # noqa: F401  (global_contrast, local_contrast)
    lvmmed,  # noqa: F401  (registers lvmmed)
    more,  # noqa: F401  (registers more)
    participant,  # noqa: F401  (registers participant)
    simclr,  # noqa: F401  (registers simclr, dcl)
    ts2vec,  # noqa: F401  (registers ts2vec)
)
from medssl.platform.methods.autotcl import AutoTCL
from medssl.platform.methods.base import Method
from medssl.platform.methods.convirt import ConVIRT
from medssl.platform.methods.lvmmed import LVMMed
from medssl.platform.methods.more import MoRE
from medssl.platform.methods.participant import ParticipantContrast
from medssl.platform.methods.simclr import DCL, SimCLR
from medssl.platform.methods.ts2vec import TS2Vec

__all__ = ["DCL", "AutoTCL", "ConVIRT", "LVMMed", "Method", "MoRE", "ParticipantContrast", "SimCLR", "TS2Vec"]
