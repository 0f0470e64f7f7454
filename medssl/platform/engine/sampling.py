"""Batch samplers that decide which items share a batch: pairs of items of one subject for
participant-level contrast (two different segments of one person are the positive pair)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class SubjectPairSampler(Sampler[list[int]]):
    """Batches of `batch_size` / 2 pairs; a pair is two DIFFERENT items of one subject, served
    next to each other (positions 2k and 2k + 1 of a batch), as participant-level contrast
    needs (Abbaspourazad et al., ICLR 2024).

    Each epoch every item of a subject with at least two items is an anchor once, in a seeded
    random order; its partner is drawn uniformly from the other items of its subject. A
    subject may hold several pairs of one batch (methods must not push its other items away).
    Subjects with a single item cannot form a pair and are left out: `paired_items` says how
    many items take part. Batches depend only on (seed, epoch), not on the number of processes:
    under DDP every rank draws the global batch and serves its own share of whole pairs.

    Args:
        subjects: the subject of each dataset position.
        batch_size: the global batch (even, a multiple of 2 x num_replicas).
        seed: the run seed (>= 0).
        num_replicas: number of processes; rank: this process's rank.

    Example:
        >>> sampler = SubjectPairSampler(["a", "a", "b", "b", "b", "c"], batch_size=4)
        >>> len(sampler), sampler.paired_items
        (2, 5)
        >>> batch = next(iter(sampler))
        >>> all(batch[k] != batch[k + 1] for k in (0, 2))
        True
    """

    def __init__(
        self,
        subjects: Sequence[object],
        batch_size: int,
        *,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} must lie in [0, num_replicas={num_replicas})")
        if batch_size < 2 or batch_size % (2 * num_replicas):
            raise ValueError(
                f"batch_size must be a positive multiple of 2 x num_replicas "
                f"({2 * num_replicas}) to hold whole pairs on every rank, got {batch_size}"
            )
        groups: dict[object, list[int]] = defaultdict(list)
        for position, subject in enumerate(subjects):
            groups[subject].append(position)
        self.groups = [members for members in groups.values() if len(members) >= 2]
        self.anchors = np.array([p for members in self.groups for p in members], dtype=np.int64)
        self.group_of = np.array(
            [g for g, members in enumerate(self.groups) for _ in members], dtype=np.int64
        )
        self.pairs_per_batch = batch_size // 2
        if len(self.anchors) < self.pairs_per_batch:
            raise ValueError(
                f"batch_size {batch_size} needs {self.pairs_per_batch} anchors but only "
                f"{len(self.anchors)} items belong to subjects with two or more items; lower it"
            )
        self.seed, self.num_replicas, self.rank = int(seed), num_replicas, rank
        self.epoch, self.start_batch = 0, 0

    @property
    def paired_items(self) -> int:
        """Items of subjects with at least two items (the rest never appear)."""
        return len(self.anchors)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Serve epoch `epoch` from its batch `start_batch` on (to resume mid-epoch)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        return len(self.anchors) // self.pairs_per_batch

    def batches(self, epoch: int) -> list[list[int]]:
        """All of this rank's batches of `epoch` as dataset positions, pair by pair."""
        rng = np.random.default_rng([self.seed, int(epoch), 11])
        order = rng.permutation(len(self.anchors))[: len(self) * self.pairs_per_batch]
        # A partner is another member of the anchor's group: a uniform offset in 1..n-1 from
        # the anchor's slot in its group, so it is never the anchor itself.
        sizes = np.array([len(g) for g in self.groups])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        group = self.group_of[order]
        slot = order - starts[group]
        offset = 1 + (rng.random(len(order)) * (sizes[group] - 1)).astype(np.int64)
        partner = self.anchors[starts[group] + (slot + offset) % sizes[group]]
        pairs = np.stack([self.anchors[order], partner], axis=1)
        share = self.pairs_per_batch // self.num_replicas
        out = []
        for b in range(len(self)):
            mine = pairs[b * self.pairs_per_batch :][self.rank * share : (self.rank + 1) * share]
            out.append([int(p) for p in mine.reshape(-1)])
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)[self.start_batch :]
        self.start_batch = 0
        return iter(batches)
