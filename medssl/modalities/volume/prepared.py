"""The handle on a prepared volume cache: records in order, and their preprocessed arrays
opened as read-only memory maps (shared by DataLoader workers through the page cache).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.base import Record
from medssl.platform.errors import DataError

_OPEN_MEMMAPS = 128  # each memmap holds a file descriptor; keep a bounded number open


class PreparedVolumes:
    """Handle on a prepared cache: records in order, and memory-mapped arrays per record.

    image(i) -> float32 (C, X, Y, Z); mask(i) -> integer (1, X, Y, Z) or None;
    meta(i) -> shape, spacing, affine, orientation, label, subject_id, source.
    """

    def __init__(self, records: Sequence[Record], entries: Sequence[dict[str, Any]], root: Path):
        self.records = list(records)
        self.entries = list(entries)
        self.root = Path(root)
        unique = sorted({r.subject_id for r in self.records})
        self._subject_rank = {s: i for i, s in enumerate(unique)}
        self._open: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()  # memmaps are reopened in each DataLoader worker
        return state

    def subject(self, i: int) -> int:
        """A stable integer per subject_id: its rank among the sorted unique ids."""
        return self._subject_rank[self.records[i].subject_id]

    def shape(self, i: int) -> tuple[int, ...]:
        """(C, X, Y, Z) of record i after preprocessing."""
        return tuple(self.entries[i]["shape"])

    def spacing(self, i: int) -> tuple[float, float, float]:
        return tuple(self.entries[i]["spacing"])  # type: ignore[return-value]

    def has_mask(self, i: int) -> bool:
        return self.entries[i].get("mask_file") is not None

    def max_mask_label(self, indices: Sequence[int] | None = None) -> int:
        """The largest label value over the masks of `indices` (all records by default)."""
        chosen = range(len(self)) if indices is None else indices
        found = [int(np.max(m)) for i in chosen if (m := self.mask(i)) is not None]
        if not found:
            raise DataError(f"{self.root}: no segmentation masks among the prepared scans")
        return max(found)

    def image(self, i: int, region: tuple[slice, ...] | None = None) -> np.ndarray:
        """The preprocessed image (C, X, Y, Z) as float32, or only its spatial `region`."""
        entry = self.entries[i]
        data = self._array(entry["image_file"])
        if entry.get("item") is not None:
            data = data[entry["item"]]
        view = data[(slice(None), *region)] if region is not None else data
        out = np.asarray(view, dtype=np.float32)
        scale = entry.get("scale")
        return out * np.float32(scale) if scale is not None else out

    def mask(self, i: int, region: tuple[slice, ...] | None = None) -> np.ndarray | None:
        """The preprocessed label map (1, X, Y, Z) as stored (a memmap view), or None."""
        name = self.entries[i].get("mask_file")
        if name is None:
            return None
        data = self._array(name)
        return data[(slice(None), *region)] if region is not None else data

    def meta(self, i: int) -> dict[str, Any]:
        entry, record = self.entries[i], self.records[i]
        keep = (
            "shape",
            "spacing",
            "affine",
            "orientation",
            "format",
            "modality",
            "source",
            "mask_source",
        )
        out = {k: entry.get(k) for k in keep}
        out.update(label=record.label, subject_id=record.subject_id, split=record.split)
        return out

    def _array(self, name: str) -> np.ndarray:
        if name in self._open:
            self._open.move_to_end(name)
            return self._open[name]
        array = np.load(self.root / name, mmap_mode="r", allow_pickle=False)
        self._open[name] = array
        if len(self._open) > _OPEN_MEMMAPS:
            self._open.popitem(last=False)
        return array
