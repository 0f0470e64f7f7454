"""Participant-level InfoNCE against a slow loop over queries, in float64."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.platform.losses.participant import participant_info_nce


def reference(q, k, partner, qg, kg, tau):  # type: ignore[no-untyped-def]
    q = q / q.norm(dim=1, keepdim=True)
    k = k / k.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(q.shape[0]):
        positive = float(q[i] @ k[partner[i]]) / tau
        terms = [math.exp(positive)]
        for j in range(k.shape[0]):
            if kg[j] != qg[i] and j != partner[i]:
                terms.append(math.exp(float(q[i] @ k[j]) / tau))
        total += -positive + math.log(sum(terms))
    return total / q.shape[0]


@pytest.mark.parametrize("pairs,groups_per_batch,tau", [(3, 3, 0.04), (5, 2, 0.1), (4, 4, 0.5)])
def test_matches_the_loop(pairs: int, groups_per_batch: int, tau: float) -> None:
    g = torch.Generator().manual_seed(pairs)
    n = 2 * pairs
    q = torch.randn(n, 6, dtype=torch.float64, generator=g)
    k = torch.randn(n, 6, dtype=torch.float64, generator=g)
    partner = torch.arange(n) ^ 1
    groups = (torch.arange(n) // 2) % groups_per_batch  # some participants hold two pairs
    got = participant_info_nce(q, k, partner, groups, groups, tau)
    want = reference(q, k, partner.tolist(), groups.tolist(), groups.tolist(), tau)
    assert float(got) == pytest.approx(want, rel=1e-10)


def test_gathered_keys_and_segment_fallback() -> None:
    """More keys than queries (other ranks' keys), and partners across two views."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 5, dtype=torch.float64, generator=g)
    k = torch.randn(10, 5, dtype=torch.float64, generator=g)
    partner = torch.tensor([6, 7, 4, 5])
    qg = torch.tensor([2, 3, 0, 1])
    kg = torch.tensor([9, 8, 7, 6, 0, 1, 2, 3, 5, 4])
    got = participant_info_nce(q, k, partner, qg, kg, 0.2)
    assert float(got) == pytest.approx(reference(q, k, partner, qg, kg, 0.2), rel=1e-10)


def test_same_participant_keys_are_not_negatives() -> None:
    """Moving a same-participant key (not the partner) changes nothing; moving another
    participant's key does."""
    g = torch.Generator().manual_seed(1)
    q = torch.randn(4, 3, dtype=torch.float64, generator=g)
    k = torch.randn(4, 3, dtype=torch.float64, generator=g)
    partner = torch.tensor([1, 0, 3, 2])
    groups = torch.tensor([0, 0, 0, 1])
    base = participant_info_nce(q[:1], k, partner[:1], groups[:1], groups)
    moved = k.clone()
    moved[2] = torch.randn(3, dtype=torch.float64, generator=g)
    assert float(participant_info_nce(q[:1], moved, partner[:1], groups[:1], groups)) == float(base)
    moved[3] = -moved[3] * 5
    assert float(participant_info_nce(q[:1], moved, partner[:1], groups[:1], groups)) != float(base)


def test_bad_shapes_are_refused() -> None:
    q = torch.randn(4, 3)
    with pytest.raises(ValueError, match="partner"):
        participant_info_nce(q, q, torch.arange(3), torch.arange(4), torch.arange(4))
    with pytest.raises(ValueError, match="temperature"):
        participant_info_nce(q, q, torch.arange(4), torch.arange(4), torch.arange(4), 0.0)
