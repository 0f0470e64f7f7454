"""Tests of subject-level splits and label budgets: no patient on both sides of a split,
seeded determinism, manifest splits, class stratification, and how budgets are written."""

from __future__ import annotations

from collections import Counter

import pytest

from medssl.modalities.base import Record
from medssl.pipelines.splits import budget_label, label_subset, split_holdout
from medssl.platform.errors import ConfigError


def _cohort(scans_per_subject: list[int], labels: list[int | None] | None = None) -> list[Record]:
    """Records whose subjects have several scans each, interleaved so that a subject's scans
    are not neighbours in the list (as in a manifest sorted by date)."""
    records = []
    rounds = max(scans_per_subject)
    for r in range(rounds):
        for s, n in enumerate(scans_per_subject):
            if r < n:
                label = None if labels is None else labels[s]
                records.append(Record(subject_id=f"s{s:02d}", image=f"s{s:02d}_{r}.nii.gz",
                                      label=label))
    return records


def _subjects_of(records: list[Record], indices: list[int]) -> set[str]:
    return {records[i].subject_id for i in indices}


def _all_scans_of(records: list[Record], subjects: set[str]) -> list[int]:
    return sorted(i for i, r in enumerate(records) if r.subject_id in subjects)


# ----------------------------------------------------------------------------- hold-out


@pytest.mark.parametrize("seed", range(6))
def test_holdout_never_splits_a_subject(seed: int) -> None:
    records = _cohort([1, 3, 2, 1, 4, 2, 1, 1, 3, 2, 2, 1])
    train, holdout = split_holdout(records, 0.25, seed)
    assert sorted(train + holdout) == list(range(len(records)))
    assert not _subjects_of(records, train) & _subjects_of(records, holdout)
    # Subject-whole: every scan of a held-out subject is held out.
    assert holdout == _all_scans_of(records, _subjects_of(records, holdout))
    assert len(_subjects_of(records, holdout)) == 3  # round(0.25 * 12) subjects, not scans


def test_holdout_is_deterministic_in_the_seed() -> None:
    records = _cohort([2] * 20)
    assert split_holdout(records, 0.2, 5) == split_holdout(records, 0.2, 5)
    draws = {tuple(split_holdout(records, 0.2, seed)[1]) for seed in range(8)}
    assert len(draws) > 1


def test_holdout_keeps_at_least_one_subject_each_side() -> None:
    records = _cohort([1, 1])
    train, holdout = split_holdout(records, 0.01, 0)
    assert len(train) == 1 and len(holdout) == 1
    train, holdout = split_holdout(records, 0.99, 0)
    assert len(train) == 1 and len(holdout) == 1


def test_holdout_needs_two_subjects() -> None:
    with pytest.raises(ConfigError, match="data.holdout_fraction"):
        split_holdout(_cohort([3]), 0.2, 0)


def test_manifest_split_column_wins() -> None:
    records = _cohort([1] * 6)
    for i, split in enumerate(["train", "test", "train", "val", "train", "train"]):
        records[i].split = split
    assert split_holdout(records, 0.5, 0) == ([0, 2, 4, 5], [1, 3])
    assert split_holdout(records, 0.1, 9) == ([0, 2, 4, 5], [1, 3])


def test_manifest_with_only_train_rows_falls_back_to_a_drawn_holdout() -> None:
    records = _cohort([1] * 10)
    for r in records:
        r.split = "train"
    train, holdout = split_holdout(records, 0.2, 0)
    assert len(holdout) == 2 and len(train) == 8


def test_holdout_is_stratified_by_class() -> None:
    labels = [0] * 10 + [1] * 5 + [2] * 5
    records = _cohort([1, 2] * 10, labels)
    for seed in range(5):
        _, holdout = split_holdout(records, 0.2, seed)
        held = Counter(labels[int(s[1:])] for s in _subjects_of(records, holdout))
        assert held == Counter({0: 2, 1: 1, 2: 1}), held


# ----------------------------------------------------------------------------- label budgets


def _subset_subjects(records: list[Record], subset: list[int]) -> set[str]:
    return _subjects_of(records, subset)


@pytest.mark.parametrize("budget", [1, 3, 7])
def test_int_budget_counts_subjects(budget: int) -> None:
    records = _cohort([2, 1, 3] * 4)
    train = list(range(len(records)))
    subset = label_subset(records, train, budget, seed=0, stratify=False)
    assert len(_subset_subjects(records, subset)) == budget
    assert subset == _all_scans_of(records, _subset_subjects(records, subset))


@pytest.mark.parametrize(("budget", "subjects"), [(0.1, 2), (0.25, 5), (0.5, 10), (1.0, 20),
                                                  (0.01, 1)])
def test_float_budget_is_a_share_of_subjects(budget: float, subjects: int) -> None:
    records = _cohort([1, 2] * 10)
    train = list(range(len(records)))
    subset = label_subset(records, train, budget, seed=3, stratify=False)
    assert len(_subset_subjects(records, subset)) == subjects


def test_subset_is_drawn_from_the_training_split_only() -> None:
    records = _cohort([2] * 10)
    train, holdout = split_holdout(records, 0.3, 1)
    subset = label_subset(records, train, 1.0, seed=0, stratify=False)
    assert subset == train
    small = label_subset(records, train, 3, seed=0, stratify=False)
    assert set(small) <= set(train)
    assert not set(small) & set(holdout)


def test_same_seed_and_budget_give_the_same_subset() -> None:
    records = _cohort([1, 2, 3] * 6, [0, 1, 0] * 6)
    train = list(range(len(records)))
    for budget in (2, 0.3):
        for stratify in (False, True):
            first = label_subset(records, train, budget, seed=4, stratify=stratify)
            assert label_subset(records, train, budget, seed=4, stratify=stratify) == first
    draws = {tuple(label_subset(records, train, 3, seed=s, stratify=False)) for s in range(8)}
    assert len(draws) > 1


@pytest.mark.parametrize("budget", [2, 3, 0.1, 0.2])
def test_stratified_subsets_hold_every_class_and_whole_subjects(budget: int | float) -> None:
    labels = [0] * 16 + [1] * 2 + [2] * 2  # two rare classes
    records = _cohort([2, 1] * 10, labels)
    train = list(range(len(records)))
    for seed in range(5):
        subset = label_subset(records, train, budget, seed=seed, stratify=True)
        assert {records[i].label for i in subset} == {0, 1, 2}
        assert subset == _all_scans_of(records, _subset_subjects(records, subset))


@pytest.mark.parametrize(
    "budget",
    [2, 3, 4, 5, 7, 10],
)
def test_stratified_int_budget_labels_exactly_that_many_subjects(budget: int) -> None:
    records = _cohort([1] * 10, [0] * 5 + [1] * 5)
    train = list(range(len(records)))
    subset = label_subset(records, train, budget, seed=0, stratify=True)
    assert len(_subset_subjects(records, subset)) == budget


@pytest.mark.parametrize("budget", [21, 100])
def test_budget_larger_than_the_training_split_is_an_error(budget: int) -> None:
    records = _cohort([1] * 20)
    with pytest.raises(ConfigError, match=f"label budget {budget}"):
        label_subset(records, list(range(20)), budget, seed=0, stratify=False)


@pytest.mark.parametrize(
    ("budget", "text"),
    [(4, "4"), (1, "1"), (0.1, "10%"), (1.0, "100%"), (0.25, "25%"), (0.125, "12.5%"),
     (0.07, "7%"), (0.005, "0.5%")],
)
def test_budget_label(budget: int | float, text: str) -> None:
    assert budget_label(budget) == text


def test_unlabelled_subjects_stay_in_training() -> None:
    labelled = _cohort([1] * 8, labels=[0, 1] * 4)
    unlabelled = [Record(subject_id=f"u{k}", image=f"u{k}.nii.gz") for k in range(6)]
    records = labelled + unlabelled
    train, holdout = split_holdout(records, 0.25, 0)
    assert all(records[i].label is not None for i in holdout)
    assert len(holdout) == 2  # a quarter of the 8 labelled subjects, whatever is unlabelled
    assert set(range(8, 14)) <= set(train)
    # The labelled split does not move when unlabelled scans are added.
    assert split_holdout(labelled, 0.25, 0)[1] == holdout
