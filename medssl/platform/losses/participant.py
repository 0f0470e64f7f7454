"""Participant-level InfoNCE: a query's positive is the key of another segment of the same
participant; keys of other participants are its negatives (Abbaspourazad et al., ICLR 2024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medssl.platform.losses.infonce import masked_info_nce, work_dtype


def participant_info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    partner: torch.Tensor,
    query_groups: torch.Tensor,
    key_groups: torch.Tensor,
    temperature: float = 0.04,
) -> torch.Tensor:
    """Mean over queries i of

        l_i = -s(i, p_i) + log( exp s(i, p_i) + sum_{j : g_j != g_i} exp s(i, j) ),
        s(i, j) = cos(q_i, k_j) / tau,

    with p_i = ``partner[i]`` the key of another segment of i's participant (or of another
    view of the same segment when there is no participant id), and g the participant (group)
    of each query and key. Keys of the query's own participant other than the partner are
    neither positives nor negatives: two recordings of one person must not be pushed apart.
    With queries from the online network and keys from an EMA target, and every segment of a
    pair serving as a query, this is the symmetric loss of the paper.

    Args:
        queries: (N, D) online projections (normalised here).
        keys: (M, D) target projections, e.g. gathered from every rank (normalised here).
        partner: (N,) int64 index into `keys` of each query's positive.
        query_groups: (N,) int64 participant of each query.
        key_groups: (M,) int64 participant of each key.
        temperature: tau > 0 (the paper uses 0.04).

    Returns:
        A scalar loss (float32; float64 for float64 input).

    Example:
        >>> q = torch.eye(4)
        >>> groups = torch.tensor([0, 0, 1, 1])
        >>> partner = torch.tensor([1, 0, 3, 2])
        >>> aligned = participant_info_nce(q, q[partner], partner, groups, groups)
        >>> float(aligned) < float(participant_info_nce(q, q, partner, groups, groups))
        True
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"queries (N, D) and keys (M, D) must share D, got {tuple(queries.shape)} and "
            f"{tuple(keys.shape)}"
        )
    n, m = queries.shape[0], keys.shape[0]
    if partner.shape != (n,) or query_groups.shape != (n,) or key_groups.shape != (m,):
        raise ValueError(
            f"partner and query_groups must be ({n},) and key_groups ({m},), got "
            f"{tuple(partner.shape)}, {tuple(query_groups.shape)}, {tuple(key_groups.shape)}"
        )
    work = work_dtype(queries)
    sim = F.normalize(queries.to(work), dim=1) @ F.normalize(keys.to(work), dim=1).T
    positive = torch.zeros(n, m, dtype=torch.bool, device=queries.device)
    positive[torch.arange(n, device=queries.device), partner] = True
    eligible = query_groups[:, None] != key_groups[None, :]
    return masked_info_nce(sim / temperature, positive, eligible)
