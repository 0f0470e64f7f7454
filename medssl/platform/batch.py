"""The Batch contract: named tensors on one device, with fixed metadata names.

`x` is the input (B, C, *spatial or time). Every other key is one of `METADATA_FIELDS`
(or `index`, the dataset position that seeds per-sample randomness).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

#: Metadata names that methods may rely on. Adapters say which of these they provide.
METADATA_FIELDS: frozenset[str] = frozenset(
    {
        "subject",  # participant / patient id (int64, one per sample)
        "partition",  # slice-position bin inside a volume
        "position",  # normalised slice or window position in [0, 1]
        "spacing",  # physical voxel size (B, n_spatial), mm
        "fs",  # sampling rate, Hz
        "crop_box",  # view geometry, filled by augment: (B, 2 * n_spatial) start/stop in [0, 1]
        "text",  # token ids
        "text_mask",  # attention mask of `text`
        "label",  # class label (B,) or target (B, k)
        "mask",  # segmentation mask (B, 1, *spatial), int64 label map
        "channels_present",  # (B, C) bool
        "index",  # position of each sample in its dataset (int64); seeds keyed randomness
    }
)
ALLOWED_KEYS: frozenset[str] = METADATA_FIELDS | {"x"}


class Batch(dict[str, torch.Tensor]):
    """A dict of named tensors that checks its keys and shapes.

    Example:
        >>> b = Batch(x=torch.zeros(2, 1, 8, 8, 8), subject=torch.tensor([0, 1]))
        >>> b.batch_size
        2
    """

    def __init__(self, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        merged = dict(data or {})
        merged.update(fields)
        if "x" not in merged:
            raise ValueError(f"a Batch needs an input tensor 'x'; got keys {sorted(merged)}")
        unknown = set(merged) - ALLOWED_KEYS
        if unknown:
            raise ValueError(
                f"unknown Batch field(s) {sorted(unknown)}; allowed: {sorted(ALLOWED_KEYS)}"
            )
        super().__init__({k: torch.as_tensor(v) for k, v in merged.items()})
        n = self["x"].shape[0]
        for key, value in self.items():
            if value.ndim == 0 or value.shape[0] != n:
                raise ValueError(
                    f"Batch field '{key}' has shape {tuple(value.shape)}; "
                    f"its first dimension must be the batch size {n} of x {tuple(self['x'].shape)}"
                )

    @property
    def batch_size(self) -> int:
        return int(self["x"].shape[0])

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.keys()) - {"x"}

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch({k: v.to(device, non_blocking=non_blocking) for k, v in self.items()})

    def select(self, keys: Iterable[str]) -> Batch:
        wanted = set(keys) | {"x"}
        return Batch({k: v for k, v in self.items() if k in wanted})

    def replace(self, **fields: torch.Tensor) -> Batch:
        out = dict(self)
        out.update(fields)
        return Batch(out)


def collate_items(items: list[Mapping[str, Any]]) -> Batch:
    """Stack per-item dicts (numpy arrays, tensors or numbers) into one Batch."""
    if not items:
        raise ValueError("cannot collate an empty list of items")
    keys = set(items[0])
    for i, item in enumerate(items[1:], start=1):
        if set(item) != keys:
            raise ValueError(f"item {i} has fields {sorted(item)}, item 0 has {sorted(keys)}")
    return Batch({k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in keys})
