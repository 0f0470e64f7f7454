"""Loaders that draw pretraining batches in a method's grouping (plain items, subject pairs),
shared by every adapter; adapters add the groupings only they can build (partitions)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from medssl.platform.batch import BatchSpec
from medssl.platform.engine.sampling import SubjectPairSampler
from medssl.platform.errors import ConfigError

if TYPE_CHECKING:
    from medssl.modalities.base import Modality, Record

log = logging.getLogger("medssl")


@dataclass(frozen=True)
class LoaderRequest:
    """What the pretraining stage asks an adapter for: batches for one configured method.

    method: the method's registered name (errors name it).
    spec: the grouping and fields the method declared (`Method.batch_spec`).
    batch_size: the global batch, split over `world` processes of which this is `rank`.
    kept: a dataset reduction's kept-index (Record.image -> kept slice positions), or None.
    """

    method: str
    spec: BatchSpec
    batch_size: int
    seed: int = 0
    rank: int = 0
    world: int = 1
    num_workers: int = 0
    kept: Mapping[str, Sequence[int]] | None = None


#: Builds the loader of one grouping: (adapter, prepared data, records, indices, request).
LoaderBuilder = Callable[["Modality", Any, "Sequence[Record]", Sequence[int], LoaderRequest], Any]


def item_loader(
    dataset: Dataset,
    batch_size: int,
    collate: Callable[..., Any],
    *,
    distributed_shuffle: bool = False,
    samples: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A loader of plain items. `distributed_shuffle`: `batch_size` is the global batch and
    each of `world` processes takes its share of one seeded permutation (the same global
    batches for any world size), incomplete batches dropped; `samples`: draw that many items
    with replacement (fine-tuning on a handful of labelled scans); else the items in order."""
    sampler: Any = None
    if distributed_shuffle:
        if batch_size % world:
            raise ConfigError(
                f"pretrain.batch_size {batch_size} is the global batch and must be divisible "
                f"by the number of processes ({world})"
            )
        batch_size //= world
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        if len(sampler) < batch_size:
            raise ConfigError(
                f"pretrain.batch_size: {batch_size * world} is larger than the "
                f"{len(dataset)} pretraining items; lower it"  # type: ignore[arg-type]
            )
    elif samples is not None:
        generator = torch.Generator().manual_seed(seed)
        sampler = RandomSampler(
            dataset,  # type: ignore[arg-type]
            replacement=True, num_samples=samples, generator=generator,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=distributed_shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate,
    )


def shuffled_items(
    modality: Modality,
    prepared: Any,
    records: Sequence[Record],
    indices: Sequence[int],
    request: LoaderRequest,
) -> DataLoader:
    """The `items` grouping: the adapter's pretraining items in a seeded distributed shuffle."""
    dataset = modality.dataset(
        prepared, list(indices), "pretrain", seed=request.seed,
        **({} if request.kept is None else {"kept": request.kept}),
    )
    return item_loader(
        dataset,
        request.batch_size,
        modality.collate,
        distributed_shuffle=True,
        seed=request.seed,
        num_workers=request.num_workers,
        rank=request.rank,
        world=request.world,
    )


def subject_pairs(
    modality: Modality,
    prepared: Any,
    records: Sequence[Record],
    indices: Sequence[int],
    request: LoaderRequest,
) -> DataLoader:
    """The `subject_pairs` grouping: rows 2k and 2k + 1 are two items of one subject
    (`SubjectPairSampler`); a plain shuffle, with a warning, when no subject has two items."""
    if request.kept is not None:
        raise ConfigError(
            f"stages: 'reduce' keeps slices of volumes, but method '{request.method}' draws "
            "batches of subject pairs from whole records; remove 'reduce' from stages"
        )
    subjects = [records[i].subject_id for i in indices]
    if len(set(subjects)) < 2:
        raise ConfigError(
            f"data.path: participant-level contrast needs at least 2 participants in training "
            f"(found {len(set(subjects))}), since other participants are the negatives; add "
            "participants or set pretrain.method.positives: segment"
        )
    try:
        sampler = SubjectPairSampler(
            subjects, request.batch_size, seed=request.seed,
            num_replicas=request.world, rank=request.rank,
        )
    except ValueError as exc:
        if len(set(subjects)) < len(subjects):
            raise ConfigError(f"pretrain.batch_size: {exc}") from None
        log.warning(
            "pretrain: no participant has two segments, so positives fall back to two "
            "augmentations of each segment"
        )
        return shuffled_items(modality, prepared, records, indices, request)
    left_out = len(subjects) - sampler.paired_items
    log.info(
        "pretrain: %d participants, %d segments in pairs%s",
        len(set(subjects)),
        sampler.paired_items,
        f" ({left_out} of single-segment participants left out)" if left_out else "",
    )
    return DataLoader(
        modality.dataset(prepared, list(indices), "pretrain", seed=request.seed),
        batch_sampler=sampler,
        collate_fn=modality.collate,
        num_workers=request.num_workers,
        persistent_workers=request.num_workers > 0,
    )
