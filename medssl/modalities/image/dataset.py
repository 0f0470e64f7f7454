"""The torch Dataset over a prepared radiograph cache: whole images at the target size, with
the metadata every purpose reads (views are made later, on the device, from whole batches).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from medssl.modalities.image.prepared import PreparedImages
from medssl.platform.errors import ConfigError, DataError

PURPOSES = ("pretrain", "classification", "embed", "evaluate")
#: Why the image modality refuses segmentation.
NO_MASKS = (
    "finetune.task: segmentation needs masks, and the image modality does not read image "
    "masks yet; use finetune.task=classification (or data.modality=volume for label maps)"
)


class ImageDataset(Dataset):
    """Items `{x, index, subject, spacing[, label][, text, text_mask][, ecg, ecg_present]}`
    of a `PreparedImages` (the paired fields once `ImageModality.fit` attached them).

    x: float32 (1, H, W); index: the record's position in the prepared dataset (keys the
    augmentation); subject: the rank of its subject_id; spacing: float32 (2,) mm between rows
    and columns after resizing; label: when every chosen record has one (int64 for class
    labels, float32 for targets). Every purpose serves the same whole images; "classification"
    requires a label on every item, "segmentation" is refused (ConfigError).
    """

    def __init__(self, prepared: PreparedImages, indices: Sequence[int], purpose: str) -> None:
        if purpose == "segmentation":
            raise ConfigError(NO_MASKS)
        if purpose not in PURPOSES:
            raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
        self.prepared = prepared
        self.purpose = purpose
        self.indices = [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < len(prepared)]
        if bad:
            raise ValueError(
                f"indices {bad[:5]} are outside the prepared dataset of {len(prepared)}"
            )
        labels = [prepared.records[i].label for i in self.indices]
        self._with_label = bool(labels) and all(v is not None for v in labels)
        self._label_dtype = label_dtype(labels) if self._with_label else None
        if purpose == "classification" and not self._with_label:
            missing = next(
                prepared.records[i] for i in self.indices if prepared.records[i].label is None
            )
            raise DataError(
                f"{missing.image} has no label; classification needs a label for every image "
                "(add a label column to the manifest)"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        i = self.indices[position]
        prepared = self.prepared
        item: dict[str, Any] = {
            "x": prepared.image(i),
            "index": np.int64(i),
            "subject": np.int64(prepared.subject(i)),
            "spacing": np.asarray(prepared.spacing(i), dtype=np.float32),
        }
        if self._with_label:
            item["label"] = np.asarray(prepared.records[i].label, dtype=self._label_dtype)
        if prepared.paired is not None:
            item.update(prepared.paired.item(i))
        return item


def label_dtype(labels: list[Any]) -> type:
    """int64 when every label is a whole class number, else float32 (regression targets).

    Example:
        >>> label_dtype([0, 1, 1]).__name__, label_dtype([0.5, 2.0]).__name__
        ('int64', 'float32')
    """
    flat = [v for label in labels for v in np.asarray(label, dtype=object).reshape(-1)]
    return np.int64 if all(isinstance(v, int | np.integer) for v in flat) else np.float32
