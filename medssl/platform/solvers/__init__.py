"""Combinatorial solvers for graph matching, batched in torch on the batch's device.

Exact linear assignment (:func:`linear_assignment`), the Lawler QAP heuristic
(:func:`solve_qap`: RRWM, IPFP, pairwise swaps) with its brute-force reference, and IMLE
gradients through it (:func:`imle_qap`, :func:`hamming_loss`) for LVM-Med.
"""

from __future__ import annotations

from medssl.platform.solvers.imle import hamming_loss, imle_qap
from medssl.platform.solvers.lap import (
    linear_assignment,
    linear_assignment_reference,
    to_permutation_matrix,
)
from medssl.platform.solvers.qap import brute_force_qap, qap_objective, refine_qap, solve_qap

__all__ = [
    "brute_force_qap",
    "hamming_loss",
    "imle_qap",
    "linear_assignment",
    "linear_assignment_reference",
    "qap_objective",
    "refine_qap",
    "solve_qap",
    "to_permutation_matrix",
]
