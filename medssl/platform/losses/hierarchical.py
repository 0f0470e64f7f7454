"""The TS2Vec hierarchical contrastive loss: instance-wise and temporal contrast of two views'
per-step representations at every time scale, halving the length by max-pooling."""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _work(z: torch.Tensor) -> torch.Tensor:
    # Half precision loses too much in log-sum-exp; float64 stays float64 for exact tests.
    return z if z.dtype == torch.float64 else z.float()


#: Above this many bytes of similarities (N x 2K x 2K floats) `paired_contrast` works in row
#: blocks, recomputed in the backward pass, so memory stays near this bound at any length.
DENSE_BYTES = 256 * 2**20


def paired_contrast(z: torch.Tensor, block_rows: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of N independent pair-identification problems, vectorised.

    z is (N, 2K, D): in each problem, rows k and K + k are positives of each other and the
    other 2K - 2 rows are negatives. With raw dot products s_ij = z_i . z_j,

        l(i) = -s_{i,p(i)} + log sum_{j != i} exp(s_ij),

    averaged over all N * 2K anchors (both directions).

    When the N x 2K x 2K similarities would take more than `DENSE_BYTES` (TS2Vec's temporal
    term on long crops: 12.8 GB for 8 series of 10,000 steps), or when `block_rows` is given,
    the anchors are taken `block_rows` at a time and each block is recomputed in the backward
    pass instead of kept (activation checkpointing): memory N x block_rows x 2K instead of
    N x 2K x 2K, for about one more forward of the similarities in time. Same value and
    gradients as the dense form up to float rounding.
    """
    n, rows, _ = z.shape
    if rows % 2 or rows < 2:
        raise ValueError(f"z must stack two views along dim 1 (an even size), got {tuple(z.shape)}")
    if block_rows is not None and block_rows < 1:
        raise ValueError(f"block_rows must be a positive integer, got {block_rows}")
    half = rows // 2
    if block_rows is None:
        if n * rows * rows * z.element_size() <= DENSE_BYTES:
            return _dense_pairs(z, half)
        block_rows = max(1, DENSE_BYTES // (4 * n * rows * z.element_size()))
    if block_rows >= rows:
        return _dense_pairs(z, half)
    total = z.new_zeros(())
    for start in range(0, rows, block_rows):
        stop = min(rows, start + block_rows)
        total = total + checkpoint(_block_pairs, z, start, stop, half, use_reentrant=False)
    return total / (n * rows)


def _dense_pairs(z: torch.Tensor, half: int) -> torch.Tensor:
    rows = z.shape[1]
    sim = z @ z.transpose(1, 2)
    self_pair = torch.eye(rows, dtype=torch.bool, device=z.device)
    log_prob = torch.log_softmax(sim.masked_fill(self_pair, float("-inf")), dim=-1)
    anchor = torch.arange(rows, device=z.device)
    return -log_prob[:, anchor, (anchor + half) % rows].mean()


def _block_pairs(z: torch.Tensor, start: int, stop: int, half: int) -> torch.Tensor:
    """Sum of l(i) over anchors start..stop-1 of every problem."""
    rows = z.shape[1]
    anchors = z[:, start:stop]
    sim = anchors @ z.transpose(1, 2)  # (N, R, 2K)
    anchor = torch.arange(start, stop, device=z.device)
    own = anchor[:, None] == torch.arange(rows, device=z.device)[None, :]
    log_norm = torch.logsumexp(sim.masked_fill(own, float("-inf")), dim=-1)
    positive = (anchors * z[:, (anchor + half) % rows]).sum(dim=-1)
    return (log_norm - positive).sum()


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's instance-wise loss on (B, T, D) views: at each step t, series i of view 1 and
    series i of view 2 are positives, the other 2B - 2 series (both views) negatives. Zero
    for B = 1."""
    if z1.shape[0] == 1:
        return z1.sum() * 0.0
    return paired_contrast(torch.cat([z1, z2], dim=0).transpose(0, 1))


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's temporal loss on (B, T, D) views: for each series, step t of view 1 and step t
    of view 2 are positives, the other 2T - 2 steps (both views) negatives. Zero for T = 1."""
    if z1.shape[1] == 1:
        return z1.sum() * 0.0
    return paired_contrast(torch.cat([z1, z2], dim=1))


def _halve(z: torch.Tensor) -> torch.Tensor:
    # max_pool1d(kernel 2, stride 2): pairs of steps, an odd last step dropped.
    b, t, d = z.shape
    return z[:, : t // 2 * 2].reshape(b, t // 2, 2, d).amax(dim=2)


def hierarchical_contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5, temporal_unit: int = 0
) -> torch.Tensor:
    """Hierarchical contrastive loss of TS2Vec (Yue et al., AAAI 2022, Algorithm 1).

    Starting from the per-step representations of two views of the same time range, at each
    level d while T > 1:
        L_d = alpha * L_inst + (1 - alpha) * L_temp      (L_temp only once d >= temporal_unit)
    then max-pool both views by 2 along time (an odd last step is dropped); at T = 1 only
    alpha * L_inst is added. The loss is sum_d L_d / (number of levels). Similarities are raw
    dot products: no normalisation, no temperature (as in the paper and its code).

    Args:
        z1: (B, T, D) representations of view 1 on the shared time range.
        z2: (B, T, D) representations of view 2, aligned step by step with z1.
        alpha: weight of the instance-wise term, in [0, 1] (0.5).
        temporal_unit: first level at which the temporal term counts (0: all levels).

    Returns:
        A scalar (float32, or float64 for float64 input).

    Example:
        >>> z1, z2 = torch.randn(4, 9, 8), torch.randn(4, 9, 8)
        >>> hierarchical_contrastive_loss(z1, z2).shape
        torch.Size([])
    """
    if z1.ndim != 3 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be (B, T, D) with equal shapes, got {tuple(z1.shape)} "
            f"and {tuple(z2.shape)}"
        )
    if z1.shape[1] < 1:
        raise ValueError(f"the views must have at least one step, got {tuple(z1.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temporal_unit < 0:
        raise ValueError(f"temporal_unit must be >= 0, got {temporal_unit}")
    z1, z2 = _work(z1), _work(z2)
    loss = z1.new_zeros(())
    level = 0
    while z1.shape[1] > 1:
        if alpha > 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if level >= temporal_unit and alpha < 1:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        level += 1
        z1, z2 = _halve(z1), _halve(z2)
    if alpha > 0:
        loss = loss + alpha * instance_contrastive_loss(z1, z2)
    return loss / (level + 1)
