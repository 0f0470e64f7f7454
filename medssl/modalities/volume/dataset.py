"""Torch datasets over a prepared volume cache: per-purpose crops and pads, with reproducible
randomness keyed by (seed, index, epoch), and items that collate into a Batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from medssl.modalities.volume.prepared import PreparedVolumes
from medssl.platform.errors import DataError

PURPOSES = ("pretrain", "classification", "segmentation", "embed", "evaluate")
_RANDOM_CROP = ("pretrain", "segmentation")


class VolumeDataset(Dataset):
    """Items `{x, index, subject, spacing[, label][, mask]}` from a `PreparedVolumes`.

    purpose: "pretrain"/"segmentation" take random `patch_size` crops (segmentation centres one
    on a random foreground voxel with probability `foreground_crop_prob`); "classification"/
    "embed" take the centred crop; "evaluate" returns whole volumes. Volumes smaller than the
    patch are padded with their minimum (masks with 0). Without `patch_size` volumes are whole
    and must share a shape. Call `set_epoch` each epoch to draw new crops.
    """

    def __init__(
        self,
        prepared: PreparedVolumes,
        indices: Sequence[int],
        purpose: str,
        seed: int = 0,
        patch_size: Sequence[int] | None = None,
        foreground_crop_prob: float = 0.5,
    ) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
        self.indices = [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < len(prepared)]
        if bad:
            raise ValueError(
                f"indices {bad[:5]} are outside the prepared dataset of {len(prepared)}"
            )
        if patch_size is not None and (len(patch_size) != 3 or min(patch_size) < 1):
            raise ValueError(f"patch_size must be three positive integers; got {patch_size!r}")
        if not 0.0 <= foreground_crop_prob <= 1.0:
            raise ValueError(f"foreground_crop_prob must lie in [0, 1]; got {foreground_crop_prob}")
        self.prepared = prepared
        self.purpose = purpose
        self.seed = int(seed)
        self.patch_size = tuple(int(p) for p in patch_size) if patch_size is not None else None
        self.foreground_crop_prob = float(foreground_crop_prob)
        self.epoch = 0
        self._draws: dict[int, int] = defaultdict(int)
        records = [prepared.records[i] for i in self.indices]
        self._with_label = bool(records) and all(r.label is not None for r in records)
        self._label_dtype = label_dtype([r.label for r in records]) if self._with_label else None
        if purpose == "classification" and not self._with_label:
            missing = next(r for r in records if r.label is None)
            raise DataError(
                f"{missing.image} has no label; classification needs a label for "
                "every item (add a label column to the manifest)"
            )
        has_masks = [prepared.has_mask(i) for i in self.indices]
        if purpose == "segmentation" and not all(has_masks):
            missing = records[has_masks.index(False)]
            raise DataError(
                f"{missing.image} has no mask; segmentation needs a mask for every "
                "item (pair it with a label map or leave it out)"
            )
        self._with_mask = (
            bool(records) and all(has_masks) and purpose in ("segmentation", "evaluate")
        )
        if self.patch_size is None and purpose != "evaluate":
            self._check_same_shape()

    def set_epoch(self, epoch: int) -> None:
        """Draw new random crops: the generator of item i is seeded by (seed, i, epoch)."""
        self.epoch = int(epoch)
        self._draws.clear()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        i = self.indices[position]
        # Repeated draws of one item within an epoch (e.g. two views) differ but stay seeded.
        rng = np.random.default_rng([self.seed, i, self.epoch, self._draws[i]])
        self._draws[i] += 1
        prepared = self.prepared
        starts = self._window_starts(i, rng)
        x = self._take(i, starts, is_mask=False)
        item: dict[str, Any] = {
            "x": x.astype(np.float32, copy=False),
            "index": np.int64(i),
            "subject": np.int64(prepared.subject(i)),
            "spacing": np.asarray(prepared.spacing(i), dtype=np.float32),
        }
        if self._with_label:
            item["label"] = np.asarray(prepared.records[i].label, dtype=self._label_dtype)
        if self._with_mask:
            item["mask"] = self._take(i, starts, is_mask=True).astype(np.int64)
        return item

    def _window_starts(self, i: int, rng: np.random.Generator) -> list[int] | None:
        """Start voxel of the patch per axis (negative: the volume is padded), or None."""
        if self.patch_size is None or self.purpose == "evaluate":
            return None
        shape = self.prepared.shape(i)[1:]
        if self.purpose not in _RANDOM_CROP:
            return [(s - p) // 2 for s, p in zip(shape, self.patch_size, strict=True)]
        centre = None
        if self.purpose == "segmentation" and rng.random() < self.foreground_crop_prob:
            centre = self._foreground_voxel(i, rng)
        starts = []
        for axis, (s, p) in enumerate(zip(shape, self.patch_size, strict=True)):
            if s <= p:
                starts.append((s - p) // 2)
            elif centre is not None:
                starts.append(int(np.clip(centre[axis] - p // 2, 0, s - p)))
            else:
                starts.append(int(rng.integers(0, s - p + 1)))
        return starts

    def _foreground_voxel(self, i: int, rng: np.random.Generator) -> tuple[int, ...] | None:
        mask = self.prepared.mask(i)
        if mask is None:
            return None
        flat = np.flatnonzero(np.asarray(mask[0]).reshape(-1) > 0)
        if flat.size == 0:
            return None
        voxel = flat[int(rng.integers(0, flat.size))]
        return tuple(int(v) for v in np.unravel_index(voxel, mask.shape[1:]))

    def _take(self, i: int, starts: list[int] | None, is_mask: bool) -> np.ndarray:
        prepared = self.prepared
        if starts is None:
            data = prepared.mask(i) if is_mask else prepared.image(i)
            return np.array(data)
        shape = prepared.shape(i)[1:]
        src, dst = [], []
        for s, p, start in zip(shape, self.patch_size, starts, strict=True):  # type: ignore[arg-type]
            lo, hi = max(start, 0), min(start + p, s)
            src.append(slice(lo, hi))
            dst.append(slice(lo - start, hi - start))
        region = tuple(src)
        data = prepared.mask(i, region) if is_mask else prepared.image(i, region)
        fill = 0 if is_mask else prepared.entries[i].get("fill", 0.0)
        out = np.full((data.shape[0], *self.patch_size), fill, dtype=data.dtype)  # type: ignore[misc]
        out[(slice(None), *dst)] = data
        return out

    def _check_same_shape(self) -> None:
        shapes: dict[tuple[int, ...], int] = {}
        for i in self.indices:
            shape = self.prepared.shape(i)
            shapes.setdefault(shape, i)
            if len(shapes) > 1:
                (a, ia), (b, ib) = list(shapes.items())[:2]
                raise DataError(
                    f"{self.prepared.records[ia].image} has shape {a} but "
                    f"{self.prepared.records[ib].image} has shape {b}; set "
                    "data.preprocessing.patch_size so that volumes can be batched"
                )


def label_dtype(labels: list[Any]) -> type:
    """int64 when every label is an integer (class labels), else float32 (targets)."""
    flat = [v for label in labels for v in np.asarray(label, dtype=object).reshape(-1)]
    return np.int64 if all(isinstance(v, int | np.integer) for v in flat) else np.float32
