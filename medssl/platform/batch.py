"""The Batch contract: named tensors on one device, with registered metadata names, and the
groupings a method can ask its batches to be drawn in.

`x` is the input (B, C, *spatial or time). Every other key is a registered batch field
(`register_field`); a method declares the fields it reads and the grouping it needs in a
`BatchSpec`, and a modality's loaders build the groupings it supports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

_FIELDS: dict[str, str] = {}
_GROUPINGS: dict[str, str] = {}


def _register(table: dict[str, str], kind: str, name: str, description: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"a {kind} needs a Python identifier as its name; got '{name}'")
    known = table.get(name)
    if known is not None and known != description:
        raise ValueError(f"{kind} '{name}' is already registered as: {known}")
    table[name] = description
    return name


def register_field(name: str, description: str) -> str:
    """Add `name` to the batch fields a Batch accepts (metadata that methods may rely on),
    with a one-line description; returns the name. Registering the same name twice with the
    same description is harmless, with another one an error.

    Example:
        >>> register_field("subject", "participant / patient id (int64, one per sample)")
        'subject'
    """
    if name == "x":
        raise ValueError("'x' is the input of every Batch, not a field to register")
    return _register(_FIELDS, "batch field", name, description)


def batch_fields() -> dict[str, str]:
    """Every registered batch field with its description."""
    return dict(_FIELDS)


def register_grouping(name: str, description: str) -> str:
    """Add a way of drawing the items of a pretraining batch (see `BatchSpec`); returns the
    name. A modality supports a grouping by building a loader for it (Modality.loaders)."""
    return _register(_GROUPINGS, "grouping", name, description)


def groupings() -> dict[str, str]:
    """Every registered grouping with its description."""
    return dict(_GROUPINGS)


for _name, _description in {
    "subject": "participant / patient id (int64, one per sample)",
    "partition": "slice-position bin inside a volume (int64)",
    "position": "normalised slice or window position in [0, 1]",
    "spacing": "physical voxel size (B, n_spatial), mm",
    "fs": "sampling rate, Hz",
    "crop_box": "view geometry, filled by augment: (B, 2 * n_spatial) start/stop in [0, 1]",
    "text": "token ids",
    "text_mask": "attention mask of `text`",
    "label": "class label (B,) or target (B, k)",
    "mask": "segmentation mask (B, 1, *spatial), int64 label map",
    "channels_present": "(B, C) bool",
    "index": "position of each sample in its dataset (int64); seeds keyed randomness",
    "ecg": "paired ECG segment (B, leads, T) at the adapter's sampling rate",
    "ecg_present": "(B,) bool: the item has a paired ECG (rows without one carry zeros)",
}.items():
    register_field(_name, _description)

#: Independent items in a seeded shuffle: what most methods need.
ITEMS = register_grouping("items", "independent items in a seeded shuffle")
#: Rows 2k and 2k + 1 are two items of one subject (participant-level positives).
SUBJECT_PAIRS = register_grouping(
    "subject_pairs", "rows 2k and 2k + 1 are two different items of one subject"
)
#: m volumes x S slice-position partitions, one slice of each (Chaitanya et al. 2020).
PARTITIONS = register_grouping(
    "partitions", "m volumes x S slice-position partitions, one slice from each partition"
)


@dataclass(frozen=True)
class BatchSpec:
    """What a configured method needs of its pretraining batches: the registered `grouping`
    its items are drawn in, the metadata `fields` every batch must carry, and `min_size`, the
    fewest items one process's batch can train on. Checked before any data is read.

    Example:
        >>> BatchSpec(SUBJECT_PAIRS, frozenset({"index", "subject"})).grouping
        'subject_pairs'
    """

    grouping: str = ITEMS
    fields: frozenset[str] = field(default_factory=frozenset)
    min_size: int = 1

    def __post_init__(self) -> None:
        if self.grouping not in _GROUPINGS:
            raise ValueError(
                f"unknown grouping '{self.grouping}'; registered: {sorted(_GROUPINGS)} "
                "(add one with medssl.platform.batch.register_grouping)"
            )
        unknown = set(self.fields) - set(_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown batch field(s) {sorted(unknown)}; registered: {sorted(_FIELDS)} "
                "(add one with medssl.platform.batch.register_field)"
            )
        object.__setattr__(self, "fields", frozenset(self.fields))


class Batch(dict[str, torch.Tensor]):
    """A dict of named tensors that checks its keys (`x` and registered fields) and shapes.

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
        unknown = set(merged) - set(_FIELDS) - {"x"}
        if unknown:
            raise ValueError(
                f"unknown Batch field(s) {sorted(unknown)}; registered: {sorted(_FIELDS)} "
                "(add one with medssl.platform.batch.register_field)"
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
