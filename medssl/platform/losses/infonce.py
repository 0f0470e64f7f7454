"""Contrastive losses as ONE masked log-sum-exp: InfoNCE / NT-Xent (SimCLR) and DCL.

Any positive and negative-eligibility masks (partition-aware global, dense local, cross-rank).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medssl.platform.engine.distributed import gather_with_grad, rank


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype a loss computes in: float32, since half precision loses too much in exp/log
    sums; float64 stays float64 (for exact tests)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def masked_info_nce(
    sim: torch.Tensor,
    positive: torch.Tensor,
    eligible: torch.Tensor,
    *,
    exclude_positive_from_denominator: bool = False,
) -> torch.Tensor:
    """Mean InfoNCE over every (anchor, positive) pair of a similarity matrix.

    For each pair (a, p) with ``positive[a, p]``, with Neg(a) = {n : eligible[a, n] and not
    positive[a, n]}:

        l(a, p) = -sim[a, p] + log( exp(sim[a, p]) + sum_{n in Neg(a)} exp(sim[a, n]) )

    (InfoNCE, van den Oord et al. 2018; NT-Xent of SimCLR, Chen et al. 2020), or with
    ``exclude_positive_from_denominator`` the decoupled form of DCL (Yeh et al. 2022):

        l(a, p) = -sim[a, p] + log( sum_{n in Neg(a)} exp(sim[a, n]) )

    The result is the mean of l over all positive pairs. Anchors without a positive add
    nothing; under DCL, pairs whose anchor has no negative are skipped (nothing to contrast);
    with no pair at all the loss is 0 (still attached to the graph). Entries outside
    positive | eligible never reach the result or its gradient, even if they are inf or nan.
    The sums run in float32 (float64 for float64 input), so bf16 similarities are safe.

    Args:
        sim: (N, M) similarities already divided by the temperature; rows are anchors,
            columns candidates.
        positive: (N, M) bool, True where column m is a positive of anchor n.
        eligible: (N, M) bool, True where column m may serve as a negative of anchor n
            (set False for the anchor itself and for anything that must not be pushed away).
        exclude_positive_from_denominator: drop the positive term from the denominator (DCL).

    Returns:
        A scalar loss tensor (float32, or float64 for float64 input).

    Example:
        >>> sim = torch.tensor([[0.0, 2.0, 0.5], [2.0, 0.0, 0.1]])
        >>> positive = torch.tensor([[False, True, False], [True, False, False]])
        >>> eligible = torch.tensor([[False, True, True], [True, False, True]])
        >>> masked_info_nce(sim, positive, eligible).shape
        torch.Size([])
    """
    if sim.ndim != 2:
        raise ValueError(
            f"sim must be a 2-D (anchors, candidates) matrix, got shape {tuple(sim.shape)}"
        )
    for name, mask in (("positive", positive), ("eligible", eligible)):
        if mask.shape != sim.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"{name} must be a bool mask of sim's shape {tuple(sim.shape)}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
    negative = eligible & ~positive
    # Unused entries are replaced by 0 first so that inf/nan there cannot leak into gradients.
    logits = sim.to(work_dtype(sim)).masked_fill(~(positive | negative), 0.0)
    has_negative = negative.any(dim=1)
    negative_logits = logits.masked_fill(~negative, float("-inf"))
    row_max = negative_logits.amax(dim=1).detach()
    row_max = torch.where(has_negative, row_max, torch.zeros_like(row_max))
    negative_sum = torch.exp(negative_logits - row_max[:, None]).sum(dim=1)
    negative_sum = torch.where(has_negative, negative_sum, torch.ones_like(negative_sum))
    negative_lse = (row_max + torch.log(negative_sum))[:, None]
    if exclude_positive_from_denominator:
        denominator = negative_lse.expand_as(logits)
        counted = positive & has_negative[:, None]
    else:
        denominator = torch.where(
            has_negative[:, None], torch.logaddexp(logits, negative_lse), logits
        )
        counted = positive
    per_pair = torch.where(counted, denominator - logits, torch.zeros_like(logits))
    # clamp instead of a branch on the count: no host synchronisation on GPU.
    return per_pair.sum() / counted.sum().clamp_min(1)


def two_view_masks(
    batch_size: int, keys_per_view: int, offset: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and eligible masks of the two-view (NT-Xent) problem.

    Anchors are the 2B local rows [view 1; view 2]; candidates are the 2G keys
    [view 1 of all ranks; view 2 of all ranks]. Local sample i is global sample offset + i:
    its positive is the other view of the same global sample, and only its own key (same
    view, same sample) is ineligible. Every other of the 2G - 2 keys is a negative.
    """
    if offset < 0 or offset + batch_size > keys_per_view:
        raise ValueError(
            f"offset {offset} + batch size {batch_size} exceeds the {keys_per_view} gathered keys"
        )
    rows = torch.arange(2 * batch_size, device=device)
    view = rows // batch_size
    sample = offset + rows % batch_size
    positive = torch.zeros(2 * batch_size, 2 * keys_per_view, dtype=torch.bool, device=device)
    positive[rows, (1 - view) * keys_per_view + sample] = True
    eligible = torch.ones_like(positive)
    eligible[rows, view * keys_per_view + sample] = False
    return positive, eligible


def _two_view_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float,
    gathered: tuple[torch.Tensor, torch.Tensor] | None,
    offset: int | None,
    decoupled: bool,
) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be (B, D) with equal shapes, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if gathered is None:
        gathered = (gather_with_grad(z1), gather_with_grad(z2))
    k1, k2 = gathered
    if k1.shape != k2.shape or k1.ndim != 2 or k1.shape[1] != z1.shape[1]:
        raise ValueError(
            f"gathered keys must both be (G, {z1.shape[1]}), got {tuple(k1.shape)} and {tuple(k2.shape)}"
        )
    batch = z1.shape[0]
    offset = rank() * batch if offset is None else offset
    work = work_dtype(z1)
    queries = F.normalize(torch.cat([z1, z2]).to(work), dim=1)
    keys = F.normalize(torch.cat([k1, k2]).to(work), dim=1)
    positive, eligible = two_view_masks(batch, k1.shape[0], offset, device=z1.device)
    sim = queries @ keys.T / temperature
    return masked_info_nce(sim, positive, eligible, exclude_positive_from_denominator=decoupled)


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    *,
    gathered: tuple[torch.Tensor, torch.Tensor] | None = None,
    offset: int | None = None,
) -> torch.Tensor:
    """NT-Xent loss of SimCLR (Chen et al., 2020, "A Simple Framework for Contrastive
    Learning of Visual Representations").

    With 2B anchors u (both views) and sim = cosine similarity:
        l(u, u+) = -sim(u, u+)/tau + log sum_{v != u} exp(sim(u, v)/tau),
    averaged over all 2B anchors; u+ is the other view of the same sample, so each anchor has
    2B - 2 negatives (2G - 2 with keys gathered from all ranks).

    Args:
        z1: (B, D) embeddings of view 1 (normalised here; need not be unit length).
        z2: (B, D) embeddings of view 2, row i the same sample as z1's row i.
        temperature: tau > 0.
        gathered: keys (k1, k2), each (G, D), from all ranks in rank order. Default: z1 and z2
            gathered across ranks with gradients (just z1 and z2 in a single process). Pass
            EMA-target embeddings here to contrast online queries against target keys.
        offset: global index of this rank's first sample among the G keys; default rank() * B.

    Example:
        >>> z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
        >>> float(info_nce(z1, z1, 0.1)) < float(info_nce(z1, z2, 0.1))
        True
    """
    return _two_view_loss(z1, z2, temperature, gathered, offset, decoupled=False)


def dcl(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    *,
    gathered: tuple[torch.Tensor, torch.Tensor] | None = None,
    offset: int | None = None,
) -> torch.Tensor:
    """Decoupled contrastive loss (Yeh et al., 2022, "Decoupled Contrastive Learning").

    As :func:`info_nce` but the positive is removed from the denominator:
        l(u, u+) = -sim(u, u+)/tau + log sum_{v not in {u, u+}} exp(sim(u, v)/tau).
    Arguments as in :func:`info_nce`. The loss can be negative.

    Example:
        >>> z1 = torch.randn(4, 8)
        >>> float(dcl(z1, z1, 0.1)) < float(dcl(z1, torch.randn(4, 8), 0.1))
        True
    """
    return _two_view_loss(z1, z2, temperature, gathered, offset, decoupled=True)
