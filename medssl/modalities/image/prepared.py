"""The handle on a prepared radiograph cache: records in order, one (N, 1, H, W) float32
array of every image at the target size, opened as a read-only memory map.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.base import Record
from medssl.modalities.image.paired import PairedData
from medssl.platform.errors import DataError


class PreparedImages:
    """Handle on a prepared cache.

    image(i) -> float32 (1, H, W); spacing(i) -> (rows, cols) mm after resizing; pad(i) ->
    (top, bottom, left, right) pixels of fill; meta(i) -> format, source shape, spacing, pad,
    label, subject_id, split and what the reader said (DICOM modality, VOI, conversions).
    """

    channels = 1  # radiographs are grey; the encoder's in_channels

    def __init__(self, records: Sequence[Record], root: Path) -> None:
        self.records = list(records)
        self.root = Path(root)
        meta = json.loads((self.root / "meta.json").read_text())
        self.size: tuple[int, int] = tuple(meta["size"])
        self.info: list[dict[str, Any]] = meta["items"]
        self.spacings = np.load(self.root / "spacing.npy")
        self.pads = np.load(self.root / "pad.npy")
        self.source_shapes = np.load(self.root / "source_shape.npy")
        self.fills = np.load(self.root / "fill.npy")
        if len(self.spacings) != len(self.records):
            raise DataError(
                f"{self.root} holds {len(self.spacings)} images for {len(self.records)} records; "
                "delete the folder to rebuild it"
            )
        unique = sorted({r.subject_id for r in self.records})
        self._subject_rank = {s: i for i, s in enumerate(unique)}
        self._images: np.ndarray | None = None
        #: Report tokens and ECG segments, attached by `ImageModality.fit` when configured.
        self.paired: PairedData | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_images"] = None  # the memory map is reopened in each DataLoader worker
        return state

    @property
    def images(self) -> np.ndarray:
        """Every prepared image, (N, 1, H, W) float32, memory-mapped read-only."""
        if self._images is None:
            self._images = np.load(self.root / "images.npy", mmap_mode="r", allow_pickle=False)
        return self._images

    def image(self, i: int) -> np.ndarray:
        """A writable float32 copy (1, H, W) of prepared image i."""
        return np.array(self.images[i], dtype=np.float32)

    def subject(self, i: int) -> int:
        """A stable integer per subject_id: its rank among the sorted unique ids."""
        return self._subject_rank[self.records[i].subject_id]

    def spacing(self, i: int) -> tuple[float, float]:
        return (float(self.spacings[i, 0]), float(self.spacings[i, 1]))

    def pad(self, i: int) -> tuple[int, int, int, int]:
        return tuple(int(v) for v in self.pads[i])  # type: ignore[return-value]

    def has_mask(self, i: int) -> bool:
        return False

    def max_mask_label(self, indices: Sequence[int] | None = None) -> int:
        raise DataError(
            f"{self.root}: radiographs carry no segmentation masks (image masks are not "
            "supported yet); use finetune.task=classification"
        )

    def meta(self, i: int) -> dict[str, Any]:
        record = self.records[i]
        out = dict(self.info[i])
        out.update(
            source=record.image,
            source_shape=[int(v) for v in self.source_shapes[i]],
            spacing=list(self.spacing(i)),
            pad=list(self.pad(i)),
            fill=float(self.fills[i]),
            label=record.label,
            subject_id=record.subject_id,
            split=record.split,
        )
        return out
