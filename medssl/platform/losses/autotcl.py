"""AutoTCL's losses: the encoder's global and local-window InfoNCE, and the augmenter's
multi-kernel MMD, keep-probability sparsity and temporal smoothness terms, and two penalties
against a keep probability that saturates into a fixed mask (an entropy floor, a minimum keep
rate per channel)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medssl.platform.losses.infonce import masked_info_nce


def gaussian_mmd(
    source: torch.Tensor,
    target: torch.Tensor,
    kernel_mul: float = 2.0,
    kernel_num: int = 5,
    bandwidth: float | None = None,
) -> torch.Tensor:
    """Squared maximum mean discrepancy with a sum of Gaussian kernels (Gretton et al., JMLR
    2012; the multi-kernel form of AutoTCL's code).

        k(a, b) = sum_{i < kernel_num} exp(-||a - b||^2 / (h * kernel_mul^(i - kernel_num // 2)))
        MMD^2 = mean k(S, S) + mean k(T, T) - 2 mean k(S, T)      (biased V-statistic)

    h is `bandwidth`, or by default the mean squared distance between distinct points of the
    pooled sample (no gradient flows through it).

    Args:
        source: (N, D) embeddings (AutoTCL: max-pooled representations of x).
        target: (M, D) embeddings (AutoTCL: of the augmented views).
        kernel_mul: ratio between neighbouring bandwidths (2).
        kernel_num: number of kernels (5).
        bandwidth: fixed h > 0, or None for the data-driven one.

    Example:
        >>> a = torch.randn(8, 4)
        >>> float(gaussian_mmd(a, a)) == 0.0
        True
    """
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(
            f"source and target must be (N, D) and (M, D), got {tuple(source.shape)} "
            f"and {tuple(target.shape)}"
        )
    if kernel_num < 1 or kernel_mul <= 0:
        raise ValueError(
            f"kernel_num must be >= 1 and kernel_mul > 0, got {kernel_num}, {kernel_mul}"
        )
    if bandwidth is not None and bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    work = torch.float64 if source.dtype == torch.float64 else torch.float32
    pooled = torch.cat([source, target]).to(work)
    # Explicit differences (N is a batch, small): exact, with a finite gradient at 0.
    distance = (pooled[:, None, :] - pooled[None, :, :]).square().sum(dim=-1)
    n = pooled.shape[0]
    if bandwidth is None:
        base = distance.detach().sum() / max(n * n - n, 1)
    else:
        base = torch.tensor(bandwidth, dtype=work, device=pooled.device)
    # A zero bandwidth (all points equal) would divide by zero; any positive value gives 0.
    base = base.clamp_min(torch.finfo(work).tiny)
    kernel = sum(
        torch.exp(-distance / (base * kernel_mul ** (i - kernel_num // 2)))
        for i in range(kernel_num)
    )
    assert isinstance(kernel, torch.Tensor)
    s = source.shape[0]
    return kernel[:s, :s].mean() + kernel[s:, s:].mean() - 2 * kernel[:s, s:].mean()


def _masked_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def _check_keep(keep_probability: torch.Tensor) -> None:
    if keep_probability.ndim != 3:
        raise ValueError(f"keep_probability must be (B, C, T), got {tuple(keep_probability.shape)}")


def keep_sparsity(
    keep_probability: torch.Tensor, threshold: float = 0.4, steps: torch.Tensor | None = None
) -> torch.Tensor:
    """AutoTCL's sparsity term relu(mean(p) - threshold): pushes the mean keep probability p
    below `threshold` so the augmenter must drop parts of the input.

    Args:
        keep_probability: (B, C, T) keep probabilities p in [0, 1].
        threshold: the allowed mean keep probability (0.4).
        steps: optional (B, T) bool; only these steps enter the mean (padding excluded).
    """
    _check_keep(keep_probability)
    weight = None if steps is None else steps[:, None, :]
    return F.relu(_masked_mean(keep_probability, weight) - threshold)


def temporal_smoothness(
    keep_probability: torch.Tensor, steps: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute change of the keep probability between neighbouring steps,
    mean_{b, c, t} |p[b, c, t + 1] - p[b, c, t]|, over pairs of steps that are both in `steps`
    (B, T) when given. (AutoTCL's code samples a few random pairs; all pairs are used here.)
    Zero for T < 2.
    """
    _check_keep(keep_probability)
    if keep_probability.shape[-1] < 2:
        return keep_probability.sum() * 0.0
    change = (keep_probability[..., 1:] - keep_probability[..., :-1]).abs()
    weight = None if steps is None else (steps[:, 1:] & steps[:, :-1])[:, None, :]
    return _masked_mean(change, weight)


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = -p log2 p - (1 - p) log2(1 - p) in bits, elementwise (1 at p = 0.5, 0 at 0 and 1).
    p is clamped to [1e-6, 1 - 1e-6] first, so the value and its gradient stay finite; computed
    in float32 (float64 for float64 input).

    Example:
        >>> [round(h, 3) for h in binary_entropy(torch.tensor([0.5, 0.11, 1.0])).tolist()]
        [1.0, 0.5, 0.0]
    """
    work = torch.float64 if p.dtype == torch.float64 else torch.float32
    q = p.to(work).clamp(1e-6, 1 - 1e-6)
    return -(q * torch.log2(q) + (1 - q) * torch.log2(1 - q))


def keep_entropy_floor(
    keep_probability: torch.Tensor, floor: float, steps: torch.Tensor | None = None
) -> torch.Tensor:
    """relu(floor - mean H(p)): zero while the keep probabilities p are undecided enough on
    average (mean binary entropy, in bits, at least `floor`), growing as they saturate towards
    a fixed mask (p at 0 or 1, where the hard-concrete mask stops being random).

    Args:
        keep_probability: (B, C, T) keep probabilities p in [0, 1].
        floor: the least mean entropy in bits, in [0, 1] (0: never active).
        steps: optional (B, T) bool; only these steps enter the mean (padding excluded).

    Example:
        >>> float(keep_entropy_floor(torch.full((2, 1, 4), 0.5), 0.6))
        0.0
    """
    _check_keep(keep_probability)
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor is in bits and must be in [0, 1], got {floor}")
    weight = None if steps is None else steps[:, None, :]
    return F.relu(floor - _masked_mean(binary_entropy(keep_probability), weight))


def channel_keep_rate(
    keep_probability: torch.Tensor, steps: torch.Tensor | None = None
) -> torch.Tensor:
    """The mean keep probability of each channel over the batch and its `steps` (B, T):
    (C,). A channel at 0 is never shown to the encoder."""
    _check_keep(keep_probability)
    if steps is None:
        return keep_probability.mean(dim=(0, 2))
    weight = steps[:, None, :].to(keep_probability.dtype).expand_as(keep_probability)
    return (keep_probability * weight).sum(dim=(0, 2)) / weight.sum(dim=(0, 2)).clamp_min(1.0)


def channel_keep_floor(
    keep_probability: torch.Tensor, minimum: float, steps: torch.Tensor | None = None
) -> torch.Tensor:
    """sum_c relu(minimum - mean_{b, t} p[b, c, t]): each channel whose mean keep probability
    (`channel_keep_rate`) falls below `minimum` adds its shortfall, so no channel can be
    dropped from every view while the sparsity term only bounds the mean over channels.

    Example:
        >>> p = torch.tensor([[[0.3, 0.5], [0.0, 0.1]]])
        >>> round(float(channel_keep_floor(p, 0.2)), 4)
        0.15
    """
    if not 0.0 <= minimum <= 1.0:
        raise ValueError(f"minimum must be in [0, 1], got {minimum}")
    return F.relu(minimum - channel_keep_rate(keep_probability, steps)).sum()


def cross_view_info_nce(
    anchors: torch.Tensor, candidates: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """AutoTCL's global InfoNCE: cosine similarities between anchor i (an embedding of x) and
    every candidate j (embeddings of the augmented views); candidate i is the positive, the
    other B - 1 candidates the negatives:
        l(i) = -s_ii / tau + log sum_j exp(s_ij / tau)

    Example:
        >>> z = torch.randn(6, 8)
        >>> float(cross_view_info_nce(z, z)) < float(cross_view_info_nce(z, torch.randn(6, 8)))
        True
    """
    if anchors.ndim != 2 or anchors.shape != candidates.shape:
        raise ValueError(
            f"anchors and candidates must both be (B, D), got {tuple(anchors.shape)} "
            f"and {tuple(candidates.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    work = torch.float64 if anchors.dtype == torch.float64 else torch.float32
    sim = F.normalize(anchors.to(work), dim=1) @ F.normalize(candidates.to(work), dim=1).T
    positive = torch.eye(anchors.shape[0], dtype=torch.bool, device=anchors.device)
    return masked_info_nce(sim / temperature, positive, torch.ones_like(positive))


def local_window_info_nce(
    sequence: torch.Tensor, num_windows: int = 16, temperature: float = 1.0, start: int = 0
) -> torch.Tensor:
    """AutoTCL's local loss over adjacent windows of each series.

    The per-step representations (B, D, T) are L2-normalised per step; `num_windows`
    consecutive windows of w = T // num_windows steps from `start` are max-pooled into one
    vector each; within each series, window i's positives are windows i - 1 and i + 1 and its
    negatives every window at distance >= 2 (InfoNCE on cosine-type scores / tau). Every
    series of the batch contributes (the authors' code used only the first). Zero (attached)
    when w < 1 or num_windows < 3.

    Args:
        sequence: (B, D, T) per-step representations.
        num_windows: k, the number of windows (16).
        temperature: tau (1.0).
        start: first step of the windowed range; start + k * w must be <= T.
    """
    if sequence.ndim != 3:
        raise ValueError(f"sequence must be (B, D, T), got {tuple(sequence.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, d, t = sequence.shape
    width = t // num_windows if num_windows > 0 else 0
    if width < 1 or num_windows < 3:
        return sequence.sum() * 0.0
    if start < 0 or start + num_windows * width > t:
        raise ValueError(f"start {start} leaves fewer than {num_windows} x {width} of {t} steps")
    work = torch.float64 if sequence.dtype == torch.float64 else torch.float32
    unit = F.normalize(sequence.to(work), dim=1)[..., start : start + num_windows * width]
    windows = unit.reshape(b, d, num_windows, width).amax(dim=-1).transpose(1, 2)
    sim = (windows @ windows.transpose(1, 2)).reshape(b * num_windows, num_windows)
    index = torch.arange(num_windows, device=sequence.device)
    gap = (index[:, None] - index[None, :]).abs()
    positive = (gap == 1).repeat(b, 1)
    eligible = (gap >= 1).repeat(b, 1)
    return masked_info_nce(sim / temperature, positive, eligible)
