"""The subject-pair batch sampler: pairs of different items of one subject, seeded epochs,
world-size independent batches."""

from __future__ import annotations

import pytest

from medssl.platform.engine.sampling import SubjectPairSampler

SUBJECTS = ["a"] * 5 + ["b"] * 2 + ["c"] + ["d"] * 4


def test_pairs_are_two_different_items_of_one_subject() -> None:
    sampler = SubjectPairSampler(SUBJECTS, batch_size=4, seed=3)
    assert sampler.paired_items == 11  # "c" has one item and cannot pair
    assert len(sampler) == 11 // 2
    for epoch in range(5):
        sampler.set_epoch(epoch)
        anchors = []
        for batch in sampler:
            assert len(batch) == 4
            for k in range(0, 4, 2):
                i, j = batch[k], batch[k + 1]
                assert i != j and SUBJECTS[i] == SUBJECTS[j]
                anchors.append(i)
        assert 7 not in anchors
        assert len(set(anchors)) == len(anchors)  # every anchor once per epoch


def test_epochs_differ_and_repeat_with_the_seed() -> None:
    one = SubjectPairSampler(SUBJECTS, batch_size=4, seed=0)
    two = SubjectPairSampler(SUBJECTS, batch_size=4, seed=0)
    assert one.batches(0) == two.batches(0)
    assert one.batches(0) != one.batches(1)
    assert one.batches(0) != SubjectPairSampler(SUBJECTS, batch_size=4, seed=1).batches(0)


def test_ranks_share_the_global_batch() -> None:
    whole = SubjectPairSampler(SUBJECTS, batch_size=4, seed=2).batches(1)
    ranks = [
        SubjectPairSampler(SUBJECTS, batch_size=4, seed=2, num_replicas=2, rank=r).batches(1)
        for r in (0, 1)
    ]
    assert [a + b for a, b in zip(*ranks, strict=True)] == whole


def test_resume_mid_epoch_and_bad_arguments() -> None:
    sampler = SubjectPairSampler(SUBJECTS, batch_size=2, seed=0)
    sampler.set_epoch(2, start_batch=3)
    assert list(sampler) == sampler.batches(2)[3:]
    with pytest.raises(ValueError, match="multiple of 2"):
        SubjectPairSampler(SUBJECTS, batch_size=3)
    with pytest.raises(ValueError, match="lower it"):
        SubjectPairSampler(["a", "b", "c"], batch_size=2)
