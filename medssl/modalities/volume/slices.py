"""Axial slices of prepared volumes: in reading orientation (dataset reduction), as a 2D
dataset, and the volume-partition batch sampler of partition-aware contrastive pretraining
(m volumes x S partitions, one slice per partition).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from medssl.modalities.volume.dataset import label_dtype
from medssl.modalities.volume.prepared import PreparedVolumes
from medssl.platform.batch import collate_items
from medssl.platform.errors import DataError

#: Per volume, per partition: the dataset positions of that partition's served slices.
Cells = Sequence[Sequence[Sequence[int]]]


def axial_slices(image: np.ndarray, orientation: str) -> tuple[torch.Tensor, int, list[int]]:
    """The axial slices of one (X, Y, Z) volume whose voxel axes run along `orientation`.

    Returns (slices (n, rows, cols), axis, positions): slices ordered from inferior to
    superior, each shown as a radiologist reads an axial image (rows anterior -> posterior,
    columns patient right -> left, as in a DICOM series), the voxel axis they run along, and
    each slice's index along that axis.
    """
    codes = orientation.upper()
    where = {c: i for i, c in enumerate(codes)}
    axis = where.get("S", where.get("I"))
    ap = where.get("A", where.get("P"))
    lr = where.get("L", where.get("R"))
    if axis is None or ap is None or lr is None:
        raise DataError(f"orientation '{orientation}' lacks an S/I, A/P or L/R axis")
    view = np.transpose(image, (axis, ap, lr))
    flips = tuple(
        d
        for d, wrong in ((0, codes[axis] == "I"), (1, codes[ap] == "A"), (2, codes[lr] == "R"))
        if wrong
    )
    # One writable copy (the prepared cache hands out read-only memory maps).
    stack = torch.from_numpy(np.array(np.flip(view, flips) if flips else view, order="C"))
    positions = list(range(stack.shape[0]))
    if codes[axis] == "I":
        positions.reverse()
    return stack, axis, positions


def partition_of(z: int, depth: int, partitions: int) -> int:
    """The partition (0..S-1) of slice z among `depth` slices cut into S equal partitions:
    floor(z * S / depth). Partitions differ in size by at most one slice; a volume with fewer
    slices than S gives each slice its own partition and leaves S - depth partitions empty.

    Example:
        >>> [partition_of(z, 10, 4) for z in range(10)], [partition_of(z, 3, 4) for z in range(3)]
        ([0, 0, 0, 1, 1, 2, 2, 2, 3, 3], [0, 1, 2])
    """
    return (z * partitions) // depth


class SliceDataset(Dataset):
    """2D slices along the LAST voxel axis of prepared volumes: axial slices in the canonical
    RAS (or LPS) orientation the cache is built in (Chaitanya et al., 2020, work on such slices).

    Item: `x` float32 (C, X, Y); `index` (position in this dataset, keys the augmentation);
    `subject` (patient id rank, as in `VolumeDataset`); `partition` (see :func:`partition_of`,
    counted over ALL slices of the volume, so it says where the slice lies in the body);
    `position` (z / (depth - 1), 0 for one slice); `spacing` (in-plane, mm); `label` (the
    record's label, when every record has one); `mask` int64 (1, X, Y) (when every volume has
    one, unless `with_mask` is False).

    Args:
        prepared: the prepared volume cache.
        indices: records (positions in `prepared`) to serve, in order.
        partitions: S, equal partitions along the slice axis.
        slice_size: (X, Y) every slice is centre-cropped or padded to (images with the
            cache's fill value, masks with 0); None serves slices as they are (they must then
            share a shape to be batched).
        kept: a dataset-reduction kept-index: `Record.image` -> slice positions (z, counted
            from the first, most inferior slice of the prepared volume) to serve. Only those
            slices are served; a record absent from `kept` serves none. None serves all.
        with_mask: serve `mask`; None = when every served volume has one.
    """

    def __init__(
        self,
        prepared: PreparedVolumes,
        indices: Sequence[int],
        *,
        partitions: int = 4,
        slice_size: Sequence[int] | None = None,
        kept: Mapping[str, Sequence[int]] | None = None,
        with_mask: bool | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if slice_size is not None and (len(slice_size) != 2 or min(slice_size) < 1):
            raise ValueError(f"slice_size must be two positive integers, got {slice_size!r}")
        self.volumes = [int(i) for i in indices]
        bad = [i for i in self.volumes if not 0 <= i < len(prepared)]
        if bad:
            raise ValueError(
                f"indices {bad[:5]} are outside the prepared dataset of {len(prepared)}"
            )
        self.prepared = prepared
        self.partitions = int(partitions)
        self.slice_size = tuple(int(s) for s in slice_size) if slice_size is not None else None
        records = [prepared.records[i] for i in self.volumes]
        self._with_label = bool(records) and all(r.label is not None for r in records)
        self._label_dtype = label_dtype([r.label for r in records]) if self._with_label else None
        has_masks = bool(records) and all(prepared.has_mask(i) for i in self.volumes)
        if with_mask and not has_masks:
            missing = next(
                prepared.records[i].image for i in self.volumes if not prepared.has_mask(i)
            )
            raise DataError(f"{missing} has no mask; pair every volume with a label map")
        self._with_mask = has_masks if with_mask is None else bool(with_mask)
        self._slices: list[tuple[int, int, int]] = []  # (volume position, record, z)
        self._cells: list[list[list[int]]] = []
        for v, (i, zs) in enumerate(zip(self.volumes, self._served(kept), strict=True)):
            depth = prepared.shape(i)[-1]
            cells: list[list[int]] = [[] for _ in range(self.partitions)]
            for z in zs:
                cells[partition_of(z, depth, self.partitions)].append(len(self._slices))
                self._slices.append((v, i, z))
            self._cells.append(cells)
        if not self._slices:
            raise DataError(
                f"{prepared.root}: no slices to serve; the kept-index keeps none of the "
                f"{len(self.volumes)} volumes' slices"
            )

    def _served(self, kept: Mapping[str, Sequence[int]] | None) -> list[list[int]]:
        """Sorted slice positions served per volume; every out-of-range position is reported."""
        served, problems = [], []
        for i in self.volumes:
            depth = self.prepared.shape(i)[-1]
            if kept is None:
                served.append(list(range(depth)))
                continue
            image = self.prepared.records[i].image
            zs = sorted({int(z) for z in kept.get(image, ())})
            outside = [z for z in zs if not 0 <= z < depth]
            if outside:
                problems.append(f"{image}: kept slices {outside[:5]} outside 0..{depth - 1}")
            served.append(zs)
        if problems:
            raise DataError(
                f"the kept-index does not fit the prepared volumes ({len(problems)} volume(s)); "
                "rebuild it on this cache",
                problems,
            )
        return served

    def volume_of_items(self) -> np.ndarray:
        """For every item, the position in `indices` of the volume it is a slice of."""
        return np.asarray([v for v, _, _ in self._slices], dtype=np.int64)

    def cells(self) -> list[list[list[int]]]:
        """Per volume (in `indices` order), per partition: dataset positions of its slices."""
        return [[list(cell) for cell in cells] for cells in self._cells]

    def __len__(self) -> int:
        return len(self._slices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        _, i, z = self._slices[position]
        prepared = self.prepared
        depth = prepared.shape(i)[-1]
        plane = (slice(None), slice(None), slice(z, z + 1))
        fill = prepared.entries[i].get("fill", 0.0)
        x = _fit(prepared.image(i, plane)[..., 0], self.slice_size, fill)
        item: dict[str, Any] = {
            "x": x.astype(np.float32, copy=False),
            "index": np.int64(position),
            "subject": np.int64(prepared.subject(i)),
            "partition": np.int64(partition_of(z, depth, self.partitions)),
            "position": np.float32(z / (depth - 1) if depth > 1 else 0.0),
            "spacing": np.asarray(prepared.spacing(i)[:2], dtype=np.float32),
        }
        if self._with_label:
            item["label"] = np.asarray(prepared.records[i].label, dtype=self._label_dtype)
        if self._with_mask:
            mask = prepared.mask(i, plane)
            assert mask is not None
            item["mask"] = _fit(np.asarray(mask)[..., 0], self.slice_size, 0).astype(np.int64)
        return item


def _fit(plane: np.ndarray, size: tuple[int, ...] | None, fill: float) -> np.ndarray:
    """Centre-crop or pad a (C, X, Y) plane to `size` (X, Y); unchanged when size is None."""
    if size is None:
        return np.array(plane)
    out = np.full((plane.shape[0], *size), fill, dtype=plane.dtype)
    src, dst = [], []
    for have, want in zip(plane.shape[1:], size, strict=True):
        start = (have - want) // 2  # negative: pad
        lo, hi = max(start, 0), min(start + want, have)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[(slice(None), *dst)] = plane[(slice(None), *src)]
    return out


class VolumePartitionSampler(Sampler[list[int]]):
    """Batches of m volumes x S partitions with one random slice per (volume, partition)
    (Chaitanya et al., 2020): a batch never holds two slices of one partition of one volume.

    Each epoch shuffles the volumes and cuts the order into ceil(V / m) groups of m; the last
    group is topped up with volumes from the start of the order, so every volume appears in
    every epoch. Everything is drawn from a generator seeded by (seed, epoch): the batches of
    an epoch are the same in every run, and a resumed run starts from `set_epoch(epoch,
    start_batch)`. Partitions a volume does not fill (fewer slices than S, or slices dropped by
    a kept-index) are skipped, so such a batch holds fewer than m * S slices; with
    `drop_incomplete` those volumes are left out instead and every batch has m * S slices.

    Under DDP (num_replicas > 1) every rank draws the same global batch and serves its own
    m / num_replicas volumes of it; this needs `drop_incomplete` (equal batches on all ranks).

    Args:
        cells: per volume, per partition, the dataset positions of its slices
            (`SliceDataset.cells()`).
        volumes_per_batch: m (the global number of volumes per batch).
        seed: the run seed (>= 0).
        drop_incomplete: leave out volumes with an empty partition.
        num_replicas: number of processes; rank: this process's rank.

    Example:
        >>> cells = [[[0], [1]], [[2], [3, 4]], [[5], [6]]]
        >>> sampler = VolumePartitionSampler(cells, volumes_per_batch=2, seed=0)
        >>> len(sampler), [len(b) for b in sampler]
        (2, [4, 4])
    """

    def __init__(
        self,
        cells: Cells,
        volumes_per_batch: int,
        *,
        seed: int = 0,
        drop_incomplete: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} must lie in [0, num_replicas={num_replicas})")
        if volumes_per_batch < 1 or volumes_per_batch % num_replicas:
            raise ValueError(
                f"volumes_per_batch must be a positive multiple of num_replicas "
                f"({num_replicas}), got {volumes_per_batch}"
            )
        if num_replicas > 1 and not drop_incomplete:
            raise ValueError("num_replicas > 1 needs drop_incomplete=True (equal batch sizes)")
        self.cells = [[[int(p) for p in cell] for cell in volume] for volume in cells]
        wanted = all if drop_incomplete else any
        self.volumes = [v for v, volume in enumerate(self.cells) if volume and wanted(volume)]
        if volumes_per_batch > len(self.volumes):
            raise ValueError(
                f"volumes_per_batch {volumes_per_batch} exceeds the {len(self.volumes)} volumes "
                "with slices to serve; lower it"
            )
        self.volumes_per_batch = volumes_per_batch
        self.seed = int(seed)
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Serve epoch `epoch` from its batch `start_batch` on (to resume mid-epoch)."""
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def __len__(self) -> int:
        return math.ceil(len(self.volumes) / self.volumes_per_batch)

    def batches(self, epoch: int) -> list[list[int]]:
        """All of this rank's batches of `epoch` (dataset positions), volume by volume."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        order = [self.volumes[k] for k in rng.permutation(len(self.volumes))]
        m = self.volumes_per_batch
        share = m // self.num_replicas
        out = []
        for b in range(len(self)):
            group = order[b * m : (b + 1) * m]
            group += order[: m - len(group)]  # distinct: m <= V and the tail excludes the head
            # Draw for the whole global batch so a rank's slices do not depend on world size.
            picks = [
                [cell[int(rng.integers(len(cell)))] for cell in self.cells[v] if cell]
                for v in group
            ]
            mine = picks[self.rank * share : (self.rank + 1) * share]
            out.append([p for volume in mine for p in volume])
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)[self.start_batch :]
        self.start_batch = 0
        return iter(batches)


def partition_slice_loader(
    prepared: PreparedVolumes,
    indices: Sequence[int],
    *,
    volumes_per_batch: int,
    partitions: int = 4,
    seed: int = 0,
    slice_size: Sequence[int] | None = None,
    kept: Mapping[str, Sequence[int]] | None = None,
    with_mask: bool | None = False,
    num_workers: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    drop_incomplete: bool = False,
) -> DataLoader:
    """A DataLoader of Batches for partition-aware pretraining: a `SliceDataset` over
    `indices` served by a `VolumePartitionSampler` (call `loader.batch_sampler.set_epoch`
    each epoch; Lightning does). Arguments as in those two classes."""
    dataset = SliceDataset(
        prepared,
        indices,
        partitions=partitions,
        slice_size=slice_size,
        kept=kept,
        with_mask=with_mask,
    )
    sampler = VolumePartitionSampler(
        dataset.cells(),
        volumes_per_batch,
        seed=seed,
        drop_incomplete=drop_incomplete or num_replicas > 1,
        num_replicas=num_replicas,
        rank=rank,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_items,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
