"""Recall@K and zero-shot scores on hand-worked cases (ties, K clamp, several positives) and
against a brute-force sort; retrieval by cosine in both directions."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.platform.evaluation.retrieval import (
    ensemble_prompts,
    positive_ranks,
    recall_at_k,
    retrieval_scores,
    zero_shot_probabilities,
    zero_shot_scores,
)


def reference_ranks(sim: torch.Tensor, positives: torch.Tensor) -> list[int]:
    """Sort each row by score, negatives first among equal scores (ties count against the
    query), and return the 1-based position of the first positive."""
    ranks = []
    for q in range(sim.shape[0]):
        order = sorted(
            range(sim.shape[1]), key=lambda g, q=q: (-float(sim[q, g]), bool(positives[q, g]))
        )
        ranks.append(next(p for p, g in enumerate(order, 1) if positives[q, g]))
    return ranks


def _at_angles(degrees: list[float], norms: list[float]) -> torch.Tensor:
    """2-D embeddings at the given angles: cosine similarity falls with the angle between."""
    return torch.tensor(
        [
            [n * math.cos(math.radians(d)), n * math.sin(math.radians(d))]
            for d, n in zip(degrees, norms, strict=True)
        ],
        dtype=torch.float64,
    )


# ----------------------------------------------------------------------------- recall@K


def test_recall_on_a_hand_worked_3x3() -> None:
    # Query 0: its column 0 (0.9) is the top -> rank 1.
    # Query 1: column 1 (0.5) is beaten by column 0 (0.8) -> rank 2.
    # Query 2: column 2 (0.4) is beaten by column 1 (0.7) -> rank 2.
    sim = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.5, 0.2], [0.1, 0.7, 0.4]])
    assert positive_ranks(sim).tolist() == [1, 2, 2]
    assert recall_at_k(sim, ks=(1, 2, 5)) == {1: pytest.approx(1 / 3), 2: 1.0, 5: 1.0}


def test_ties_count_against_the_query() -> None:
    # Query 0: positive 0.5 ties with column 1 -> rank 2.
    # Query 1: all three score 0.3 -> rank 3.
    # Query 2: positive 0.9 ties with column 1 -> rank 2.
    sim = torch.tensor([[0.5, 0.5, 0.2], [0.3, 0.3, 0.3], [0.1, 0.9, 0.9]])
    assert positive_ranks(sim).tolist() == [2, 3, 2]
    assert recall_at_k(sim, ks=(1, 2, 3)) == {1: 0.0, 2: pytest.approx(2 / 3), 3: 1.0}


def test_a_collapsed_encoder_gets_no_credit_and_k_is_clamped_to_the_gallery() -> None:
    # All 16 scores equal: every positive ties with the 3 other columns -> rank 4.
    sim = torch.full((4, 4), 0.7)
    assert recall_at_k(sim, ks=(1, 3, 4, 10)) == {1: 0.0, 3: 0.0, 4: 1.0, 10: 1.0}


def test_several_positives_per_query() -> None:
    sim = torch.tensor(
        [
            [0.1, 0.8, 0.3, 0.5],
            [0.9, 0.2, 0.4, 0.6],
            [0.2, 0.3, 0.1, 0.7],
            [0.5, 0.5, 0.5, 0.4],
        ]
    )
    positives = torch.tensor(
        [
            [True, False, False, True],
            [False, True, False, False],
            [True, True, True, False],
            [True, False, False, True],
        ]
    )
    # Query 0: best positive 0.5 (column 3), beaten by column 1 (0.8) -> rank 2.
    # Query 1: positive 0.2, beaten by 0.9, 0.4 and 0.6 -> rank 4.
    # Query 2: best positive 0.3 (column 1), beaten by column 3 (0.7) -> rank 2.
    # Query 3: best positive 0.5 (column 0), tied by columns 1 and 2 -> rank 3.
    assert positive_ranks(sim, positives).tolist() == [2, 4, 2, 3]
    assert recall_at_k(sim, (1, 2, 3, 4), positives) == {1: 0.0, 2: 0.5, 3: 0.75, 4: 1.0}
    # With the diagonal only, query 0's positive (0.1) is last of four.
    assert positive_ranks(sim).tolist()[0] == 4


def test_a_gallery_larger_than_the_queries() -> None:
    # Query 0: column 0 (0.9) beaten by column 2 (0.95) -> rank 2; query 1: 0.6 is top -> 1.
    sim = torch.tensor([[0.9, 0.1, 0.95, 0.0], [0.2, 0.6, 0.1, 0.5]])
    assert recall_at_k(sim, ks=(1, 2)) == {1: 0.5, 2: 1.0}


@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (6, 9)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_match_a_brute_force_sort(shape: tuple[int, int], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    sim = torch.randint(0, 4, shape, generator=gen).double()  # small integers: many ties
    positives = torch.rand(shape, generator=gen) < 0.3
    positives[torch.arange(shape[0]), torch.randint(0, shape[1], (shape[0],), generator=gen)] = True
    expected = reference_ranks(sim, positives)
    assert positive_ranks(sim, positives).tolist() == expected
    got = recall_at_k(sim, (1, 2, 5), positives)
    for k in (1, 2, 5):
        assert got[k] == pytest.approx(sum(r <= k for r in expected) / shape[0])


def test_recall_rejects_bad_arguments() -> None:
    sim = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"ks must be positive integers, got \(1, 0\)"):
        recall_at_k(sim, ks=(1, 0))
    with pytest.raises(ValueError, match=r"query rows \[1\] have none"):
        recall_at_k(sim, positives=torch.tensor([[1, 0, 0], [0, 0, 0], [0, 0, 1]]).bool())
    with pytest.raises(ValueError, match="bool mask"):
        recall_at_k(sim, positives=torch.eye(3))
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        recall_at_k(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]))


# ----------------------------------------------------------------------------- retrieval


def test_retrieval_scores_in_both_directions() -> None:
    # Images at 0, 60, 90 degrees, reports at 10, 90, 80 (lengths vary: only cosine counts).
    # image->text: image 0 is nearest report 0 (10 deg) -> rank 1; image 1 (60) is nearer
    #   report 2 (20) than its report 1 (30) -> rank 2; image 2 (90) is nearer report 1 (0)
    #   than its report 2 (10) -> rank 2.                                  R@1 = 1/3
    # text->image: report 0 -> image 0 (10) rank 1; report 1 (90) is nearer image 2 (0) than
    #   image 1 (30) -> rank 2; report 2 (80) is nearest image 2 (10) -> rank 1.  R@1 = 2/3
    images = _at_angles([0, 60, 90], [1.0, 3.0, 0.5])
    reports = _at_angles([10, 90, 80], [2.0, 1.0, 4.0])
    assert retrieval_scores(images, reports, ks=(1, 2)) == {
        "R@1 image->text": pytest.approx(1 / 3),
        "R@2 image->text": 1.0,
        "R@1 text->image": pytest.approx(2 / 3),
        "R@2 text->image": 1.0,
    }


def test_retrieval_scores_with_identical_reports_as_positives() -> None:
    # Reports 0 and 1 are the same text (same embedding). Without telling, image 0 ties its
    # report with report 1 (rank 2), image 1 (5 deg) ties both (rank 2), and report 1 is
    # nearer image 0 than its image 1 (rank 2).
    images = _at_angles([0, 5, 90], [1.0, 1.0, 1.0])
    reports = _at_angles([0, 0, 90], [1.0, 1.0, 1.0])
    plain = retrieval_scores(images, reports, ks=(1,))
    assert plain == {
        "R@1 image->text": pytest.approx(1 / 3),
        "R@1 text->image": pytest.approx(2 / 3),
    }
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    assert retrieval_scores(images, reports, ks=(1,), positives=same) == {
        "R@1 image->text": 1.0,
        "R@1 text->image": 1.0,
    }


def test_retrieval_scores_reject_unpaired_embeddings() -> None:
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(2, 4\)"):
        retrieval_scores(torch.randn(3, 4), torch.randn(2, 4))


# ----------------------------------------------------------------------------- zero-shot


def _two_class_prompts() -> list[torch.Tensor]:
    # Class 0: (10, 10) and (1, -1) normalise to (1, 1)/sqrt2 and (1, -1)/sqrt2, average
    # (1/sqrt2, 0) -> (1, 0). (The raw mean (5.5, 4.5) would point elsewhere.) Class 1: (0, 1).
    return [torch.tensor([[10.0, 10.0], [1.0, -1.0]]), torch.tensor([[0.0, 2.0]])]


def test_prompt_ensembles_are_normalised_before_averaging() -> None:
    torch.testing.assert_close(ensemble_prompts(_two_class_prompts()), torch.eye(2))


def test_zero_shot_scores_on_a_constructed_case() -> None:
    # With classes (1, 0) and (0, 1), cos1 - cos0 = (y - x) / |(x, y)|:
    #   x0 (3, 1): -0.632 -> 0   x1 (1, 2): 0.447 -> 1   x2 (2, 1): -0.447 -> 0
    #   x3 (1, 3):  0.632 -> 1   x4 (1, 1.2): 0.128 -> 1
    # labels [0, 1, 1, 1, 0]: x2 and x4 are wrong -> accuracy 3/5; balanced (1/2 + 2/3) / 2.
    # AUROC: positives {0.447, -0.447, 0.632} vs negatives {-0.632, 0.128}: 5 of the 6 pairs
    # are ordered (only -0.447 < 0.128 is not) -> 5/6.
    images = torch.tensor([[3.0, 1.0], [1.0, 2.0], [2.0, 1.0], [1.0, 3.0], [1.0, 1.2]])
    labels = [0, 1, 1, 1, 0]
    scores = zero_shot_scores(images, _two_class_prompts(), labels)
    assert scores == {
        "auroc": pytest.approx(5 / 6),
        "accuracy": pytest.approx(0.6),
        "balanced_accuracy": pytest.approx(7 / 12),
    }
    for tau in (0.01, 1.0, 5.0):  # two classes: AUROC does not depend on the temperature
        assert zero_shot_scores(images, _two_class_prompts(), labels, tau)["auroc"] == (
            pytest.approx(5 / 6)
        )


def test_zero_shot_probabilities_are_a_softmax_of_cosine_over_temperature() -> None:
    prompts = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])]
    image = torch.tensor([[2.0, 0.0]])  # cosines (1, 0)
    e = math.e
    torch.testing.assert_close(
        zero_shot_probabilities(image, prompts, 1.0), torch.tensor([[e / (e + 1), 1 / (e + 1)]])
    )
    torch.testing.assert_close(
        zero_shot_probabilities(image, prompts, 0.5),
        torch.tensor([[e**2 / (e**2 + 1), 1 / (e**2 + 1)]]),
    )


def test_zero_shot_with_three_classes() -> None:
    prompts = [torch.eye(3)[k : k + 1] for k in range(3)]
    images = torch.tensor([[2.0, 0.1, 0.0], [0.0, 1.0, 0.3], [0.2, 0.0, 5.0], [1.0, 0.5, 0.2]])
    probabilities = zero_shot_probabilities(images, prompts)
    assert probabilities.shape == (4, 3)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(4))
    assert probabilities.argmax(dim=1).tolist() == [0, 1, 2, 0]
    scores = zero_shot_scores(images, prompts, [0, 1, 2, 0])
    assert scores["accuracy"] == 1.0 and scores["auroc"] == 1.0


def test_zero_shot_rejects_bad_arguments() -> None:
    images = torch.randn(3, 2)
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        zero_shot_probabilities(images, [torch.randn(2, 2)])
    with pytest.raises(ValueError, match=r"\(n_prompts >= 1, D\).*\(2,\)"):
        zero_shot_probabilities(images, [torch.randn(2, 2), torch.randn(2)])
    with pytest.raises(ValueError, match="D = 2 but the prompts D = 3"):
        zero_shot_probabilities(images, [torch.randn(1, 3), torch.randn(1, 3)])
    with pytest.raises(ValueError, match=r"temperature must be > 0, got 0"):
        zero_shot_probabilities(images, _two_class_prompts(), 0)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\).*range \[0, 2\]"):
        zero_shot_scores(images, _two_class_prompts(), [0, 1, 2])
