"""Subject-level splits and label budgets: nothing of one patient ever crosses a split."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from medssl.modalities.base import Record
from medssl.platform.errors import ConfigError

HOLDOUT_SPLITS = ("test", "val", "validation", "holdout")


def _subjects(records: Sequence[Record], indices: Sequence[int]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        groups[records[i].subject_id].append(i)
    return dict(sorted(groups.items()))


def split_holdout(
    records: Sequence[Record], holdout_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """(train indices, hold-out indices). A manifest `split` column wins; otherwise a seeded
    subject-level draw holds out `holdout_fraction` of the subjects, stratified by label
    when every record has a class label."""
    marked = [r.split for r in records]
    if any(s is not None for s in marked):
        holdout = [i for i, r in enumerate(records) if (r.split or "").lower() in HOLDOUT_SPLITS]
        train = [i for i, r in enumerate(records) if i not in set(holdout)]
        if holdout and train:
            return train, holdout
    # Subjects without any target (no class, no mask) serve pretraining only: they all stay
    # in training, and the labelled subjects alone are drawn for the hold-out.
    targeted = [i for i, r in enumerate(records) if r.label is not None or r.mask is not None]
    unlabelled = {r.subject_id for r in records} - {records[i].subject_id for i in targeted}
    if not targeted or not unlabelled:
        return split_subjects(
            records, range(len(records)), holdout_fraction, seed, "data.holdout_fraction"
        )
    in_targeted = {records[i].subject_id for i in targeted}
    pool = [i for i, r in enumerate(records) if r.subject_id in in_targeted]
    train, holdout = split_subjects(records, pool, holdout_fraction, seed, "data.holdout_fraction")
    rest = [i for i, r in enumerate(records) if r.subject_id in unlabelled]
    return sorted(train + rest), holdout


def split_subjects(
    records: Sequence[Record],
    indices: Sequence[int],
    fraction: float,
    seed: int | Sequence[int],
    key: str,
) -> tuple[list[int], list[int]]:
    """(kept indices, held indices): a seeded subject-level draw of `fraction` of the subjects
    among `indices`, stratified by label when every record has a class label, leaving at least
    one subject on each side. `key` names the config setting in errors."""
    groups = _subjects(records, indices)
    if len(groups) < 2:
        raise ConfigError(
            f"{key}: {len(groups)} subject(s) cannot be split by subject; at least 2 are needed"
        )
    rng = np.random.default_rng(seed)
    by_label: dict[object, list[str]] = defaultdict(list)
    for subject, idx in groups.items():
        by_label[_class_of(records[idx[0]])].append(subject)
    held: list[str] = []
    for _, subjects in sorted(by_label.items(), key=lambda kv: str(kv[0])):
        order = rng.permutation(len(subjects))
        n = int(round(fraction * len(subjects)))
        held += [subjects[k] for k in order[:n]]
    if not held:
        held = [sorted(groups)[int(rng.integers(len(groups)))]]
    if len(held) == len(groups):
        held = held[:-1]
    held_set = set(held)
    train = [i for s, idx in groups.items() if s not in held_set for i in idx]
    holdout = [i for s, idx in groups.items() if s in held_set for i in idx]
    return sorted(train), sorted(holdout)


def split_validation(
    records: Sequence[Record], labelled: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """(training indices, validation indices) carved from a labelled subset by subject, for
    picking the fine-tuning checkpoint; the hold-out is never touched."""
    return split_subjects(records, labelled, fraction, [seed, 7], "finetune.validation_fraction")


def _class_of(record: Record) -> object:
    return record.label if isinstance(record.label, (int, np.integer)) else None


def label_subset(
    records: Sequence[Record], train: Sequence[int], budget: int | float, seed: int, *, stratify: bool
) -> list[int]:
    """The labelled subset for a budget: a whole number >= 1 counts subjects, a fraction in
    (0, 1] takes that share of the subjects (at least one per class when stratified). The
    same (seed, budget) gives the same subset for every initialisation compared."""
    groups = _subjects(records, train)
    subjects = list(groups)
    n_total = len(subjects)
    if isinstance(budget, int):
        n_wanted = budget
    else:
        n_wanted = max(1, int(round(budget * n_total)))
    if n_wanted > n_total:
        raise ConfigError(
            f"label budget {budget} asks for {n_wanted} labelled subjects but the training "
            f"split has {n_total}; lower the budget"
        )
    rng = np.random.default_rng([seed, int(budget * 1000)])
    if stratify:
        by_label: dict[object, list[str]] = defaultdict(list)
        for s in subjects:
            by_label[_class_of(records[groups[s][0]])].append(s)
        classes = sorted(by_label, key=str)
        quota = {c: min(len(by_label[c]), len(by_label[c]) / n_total * n_wanted) for c in classes}
        take = {c: min(len(by_label[c]), max(1, int(quota[c]))) for c in classes}
        # Largest remainders first, so the subjects add up to the budget as written.
        for c in sorted(classes, key=lambda c: (int(quota[c]) - quota[c], str(c))):
            if sum(take.values()) >= n_wanted:
                break
            if take[c] < len(by_label[c]):
                take[c] += 1
        chosen: list[str] = []
        for c in classes:
            pool = by_label[c]
            chosen += [pool[j] for j in rng.permutation(len(pool))[: take[c]]]
    else:
        chosen = [subjects[j] for j in rng.permutation(n_total)[:n_wanted]]
    return sorted(i for s in chosen for i in groups[s])


def budget_label(budget: int | float) -> str:
    """How a budget is written in reports: `4` (subjects) or `10%`."""
    if isinstance(budget, int):
        return str(budget)
    return f"{budget * 100:g}%"
