"""The TS2Vec hierarchical contrastive loss: instance-wise and temporal contrast of two views'
per-step representations at every time scale, halving the length by max-pooling."""

from __future__ import annotations

import torch


def _work(z: torch.Tensor) -> torch.Tensor:
    # Half precision loses too much in log-sum-exp; float64 stays float64 for exact tests.
    return z if z.dtype == torch.float64 else z.float()


def paired_contrast(z: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of N independent pair-identification problems, vectorised.

    z is (N, 2K, D): in each problem, rows k and K + k are positives of each other and the
    other 2K - 2 rows are negatives. With raw dot products s_ij = z_i . z_j,

        l(i) = -s_{i,p(i)} + log sum_{j != i} exp(s_ij),

    averaged over all N * 2K anchors (both directions).
    """
    n, rows, _ = z.shape
    if rows % 2 or rows < 2:
        raise ValueError(f"z must stack two views along dim 1 (an even size), got {tuple(z.shape)}")
    half = rows // 2
    sim = z @ z.transpose(1, 2)
    self_pair = torch.eye(rows, dtype=torch.bool, device=z.device)
    log_prob = torch.log_softmax(sim.masked_fill(self_pair, float("-inf")), dim=-1)
    anchor = torch.arange(rows, device=z.device)
    return -log_prob[:, anchor, (anchor + half) % rows].mean()


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
