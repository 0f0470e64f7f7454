"""Dataset reduction before pretraining: strategies that pick the slices of a volume worth
keeping, and the kept-index file they produce (datasets read it; no file is ever copied).

Importing this package fills the REDUCERS registry.
"""

from __future__ import annotations

from medssl.platform.reduction import dhash, every_nth, similarity  # noqa: F401  (registers)
from medssl.platform.reduction.base import (
    Reducer,
    build_reducer,
    greedy_keep,
    greedy_keep_reference,
    greedy_keep_rows,
    to_grey,
)
from medssl.platform.reduction.dhash import DHash, hamming_matrix, resize_weights, slice_dhash
from medssl.platform.reduction.every_nth import EveryNth
from medssl.platform.reduction.kept_index import (
    load_kept_index,
    read_kept_index,
    summarize,
    write_kept_index,
)
from medssl.platform.reduction.similarity import SSIM, Embedding, MutualInformation

__all__ = [
    "SSIM",
    "DHash",
    "Embedding",
    "EveryNth",
    "MutualInformation",
    "Reducer",
    "build_reducer",
    "greedy_keep",
    "greedy_keep_reference",
    "greedy_keep_rows",
    "hamming_matrix",
    "load_kept_index",
    "read_kept_index",
    "resize_weights",
    "slice_dhash",
    "summarize",
    "to_grey",
    "write_kept_index",
]
