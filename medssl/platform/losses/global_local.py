"""Global and local contrastive losses of Chaitanya et al. (2020) as masks over ONE masked
InfoNCE: partition-aware global strategies, and dense local losses on decoder-map regions.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from medssl.platform.losses.infonce import masked_info_nce, work_dtype

GlobalStrategy = Literal["GR", "GD-", "GD"]
Positions = Literal["paper13", "all"]
Negatives = Literal["all", "nearby"]
STRATEGIES: tuple[str, ...] = ("GR", "GD-", "GD")
POSITIONS: tuple[str, ...] = ("paper13", "all")
NEGATIVES: tuple[str, ...] = ("all", "nearby")

# The paper's A = 13 region positions as fractions (numerator, denominator) of the last region
# start along each side: the 3 x 3 grid of corners, edge midpoints and centre, then the four
# quarter points between them (a quincunx around the centre). The official code uses the same
# 13 points in this order.
_PAPER13 = (
    *(((r, 2), (c, 2)) for r in range(3) for c in range(3)),
    *(((r, 4), (c, 4)) for r in (1, 3) for c in (1, 3)),
)


def _labels(name: str, value: torch.Tensor, n: int) -> torch.Tensor:
    value = torch.as_tensor(value)
    if value.shape != (n,) or value.is_floating_point() or value.dtype == torch.bool:
        raise ValueError(
            f"{name} must be a 1-D integer tensor of length {n}, got {value.dtype} "
            f"{tuple(value.shape)}"
        )
    return value


def global_masks(
    volume: torch.Tensor,
    partition: torch.Tensor,
    view: torch.Tensor,
    strategy: GlobalStrategy = "GD",
    *,
    sample: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative-eligible masks of the global strategies (Chaitanya et al., 2020).

    Row a is one image: a view of a slice. Rows of the same `sample` with different `view`
    are views of one slice ("same slice" below). With P[a, p] positives and E[a, n] eligible:

    - "GR" (SimCLR): P = same slice; E = every other row.
    - "GD-": P = same slice; E[a, n] = partition[n] != partition[a] (no image of the anchor's
      partition, of any volume, is pushed away).
    - "GD": as "GD-", and P also holds every row of the same partition of another volume.

    Args:
        volume: (N,) volume (or subject) id of each row.
        partition: (N,) partition index of each row's slice inside its volume.
        view: (N,) which view each row is (0 = original, 1, 2 = augmentations, ...).
        strategy: "GR", "GD-" or "GD".
        sample: (N,) slice id of each row. Default: rows with equal (volume, partition) are
            one slice, which the volume-partition sampler guarantees (one slice per partition
            per volume in a batch).

    Returns:
        (positive, eligible), both (N, N) bool, for :func:`masked_info_nce`.

    Example:
        >>> vol, part = torch.tensor([0, 0, 1, 1] * 2), torch.tensor([0, 1, 0, 1] * 2)
        >>> view = torch.tensor([0] * 4 + [1] * 4)
        >>> positive, eligible = global_masks(vol, part, view, "GD")
        >>> positive[0].nonzero().flatten().tolist(), eligible[0].nonzero().flatten().tolist()
        ([2, 4, 6], [1, 3, 5, 7])
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    volume = torch.as_tensor(volume)
    n = volume.shape[0] if volume.ndim == 1 else -1
    volume = _labels("volume", volume, n)
    partition = _labels("partition", partition, n)
    view = _labels("view", view, n)
    if sample is None:
        pairs = torch.stack([volume, partition], dim=1)
        sample = torch.unique(pairs, dim=0, return_inverse=True)[1]
    sample = _labels("sample", sample, n)
    same_slice = (sample[:, None] == sample[None, :]) & (view[:, None] != view[None, :])
    if strategy == "GR":
        return same_slice, ~torch.eye(n, dtype=torch.bool, device=volume.device)
    same_partition = partition[:, None] == partition[None, :]
    if strategy == "GD-":
        return same_slice, ~same_partition
    other_volume = volume[:, None] != volume[None, :]
    return same_slice | (same_partition & other_volume), ~same_partition


def global_info_nce(
    z: torch.Tensor,
    volume: torch.Tensor,
    partition: torch.Tensor,
    view: torch.Tensor,
    *,
    strategy: GlobalStrategy = "GD",
    temperature: float = 0.1,
    sample: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Global contrastive loss L_g of Chaitanya et al. (NeurIPS 2020), "Contrastive learning of
    global and local features for medical image segmentation with limited annotations".

        l(a, p) = -log( exp(sim(a,p)/tau) / (exp(sim(a,p)/tau) + sum_{n in Neg(a)} exp(sim(a,n)/tau)) )

    averaged over every positive pair (a, p) of :func:`global_masks` (both directions);
    Neg(a) = eligible and not positive. sim is the cosine similarity.

    Args:
        z: (N, D) anchor embeddings (normalised here).
        volume, partition, view, sample: labels of the KEYS, see :func:`global_masks`.
        strategy: "GR", "GD-" or "GD".
        temperature: tau > 0.
        keys: (M, D) candidate embeddings, e.g. gathered from every rank; default z. The
            anchors are keys[offset : offset + N].
        offset: index of the first anchor among the keys.

    Example:
        >>> z = torch.randn(8, 16)
        >>> vol, part = torch.tensor([0, 0, 1, 1] * 2), torch.tensor([0, 1, 0, 1] * 2)
        >>> view = torch.tensor([0] * 4 + [1] * 4)
        >>> global_info_nce(z, vol, part, view, strategy="GD").shape
        torch.Size([])
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    keys = z if keys is None else keys
    if z.ndim != 2 or keys.ndim != 2 or z.shape[1] != keys.shape[1]:
        raise ValueError(
            f"z and keys must be (N, D) and (M, D), got {tuple(z.shape)} and {tuple(keys.shape)}"
        )
    if offset < 0 or offset + z.shape[0] > keys.shape[0]:
        raise ValueError(f"offset {offset} + {z.shape[0]} anchors exceeds the {keys.shape[0]} keys")
    positive, eligible = global_masks(volume, partition, view, strategy, sample=sample)
    rows = slice(offset, offset + z.shape[0])
    work = work_dtype(z)
    queries = F.normalize(z.to(work), dim=1)
    candidates = F.normalize(keys.to(work), dim=1)
    sim = queries @ candidates.T / temperature
    return masked_info_nce(sim, positive[rows], eligible[rows])


# ------------------------------------------------------------------------------------ local


def region_positions(
    rows: int, cols: int, positions: Positions = "paper13", stride: int = 1
) -> torch.Tensor:
    """(A, 2) top-left corners (row, col) of the regions used, on a grid of `rows` x `cols`
    possible region starts (feature-map side minus region size plus one).

    "paper13": the 13 points of the paper's figure (our reading, also the official code's):
    with h = rows - 1 and w = cols - 1 the last starts, rows {0, h/2, h} x cols {0, w/2, w}
    (corners, edge midpoints, centre), then {h/4, 3h/4} x {w/4, 3w/4}, rounded down. Needs at
    least 5 starts per side so that the 13 points are distinct.
    "all": every start on a grid of step `stride`.
    """
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if positions == "all":
        r = torch.arange(0, rows, stride)
        c = torch.arange(0, cols, stride)
        return torch.cartesian_prod(r, c).reshape(-1, 2)
    if min(rows, cols) < 5:
        raise ValueError(
            f"the 13 paper positions need at least 5 region starts per side, got {rows} x {cols}; "
            "use a larger input, fewer pooled levels, or positions='all'"
        )
    points = [((rn * (rows - 1)) // rd, (cn * (cols - 1)) // cd) for (rn, rd), (cn, cd) in _PAPER13]
    return torch.tensor(points, dtype=torch.long)


def nearby_positions(coords: torch.Tensor, count: int) -> torch.Tensor:
    """(A, A) bool: for each position, its `count` nearest other positions (Euclidean distance
    between region starts; ties go to the lower index). The official code's hand-picked
    5 neighbours among the 13 points are of this kind."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    a = coords.shape[0]
    diff = (coords[:, None, :] - coords[None, :, :]).to(torch.float64)
    distance = (diff**2).sum(dim=2)
    distance.fill_diagonal_(float("inf"))
    order = torch.argsort(distance, dim=1, stable=True)[:, : min(count, a - 1)]
    near = torch.zeros(a, a, dtype=torch.bool, device=coords.device)
    return near.scatter_(1, order, True)


def local_regions(feat: torch.Tensor, coords: torch.Tensor, region: int) -> torch.Tensor:
    """(N, A, C * region**2) flattened region x region blocks of `feat` (N, C, H, W) whose
    top-left corners are `coords` (A, 2). Same values and order (C, row, col) as the
    columns of F.unfold, but gathers only the A blocks used."""
    offsets = torch.arange(region, device=feat.device)
    coords = coords.to(feat.device)
    r = (coords[:, 0, None] + offsets)[:, :, None]  # (A, K, 1)
    c = (coords[:, 1, None] + offsets)[:, None, :]  # (A, 1, K)
    blocks = feat[:, :, r, c]  # (N, C, A, K, K)
    return blocks.permute(0, 2, 1, 3, 4).flatten(2)


def _check_maps(feat_a: torch.Tensor, feat_b: torch.Tensor, region: int) -> None:
    if feat_a.ndim != 4 or feat_a.shape != feat_b.shape:
        raise ValueError(
            "feat_a and feat_b must both be (B, C, H, W) with equal shapes, got "
            f"{tuple(feat_a.shape)} and {tuple(feat_b.shape)}"
        )
    if region < 1 or region > min(feat_a.shape[2:]):
        raise ValueError(f"region {region} must be in [1, {min(feat_a.shape[2:])}]")


def _related_loss(
    maps: torch.Tensor,
    related: torch.Tensor,
    *,
    temperature: float,
    region: int,
    positions: Positions,
    negatives: Negatives,
    num_nearby: int,
    stride: int,
    chunk_size: int | None,
) -> torch.Tensor:
    """Dense InfoNCE over regions of `maps` (M, C, H, W). Anchor (i, p): region p of map i.
    Its candidates are the regions of the maps related to i (`related` (M, M), diagonal
    included): same position p in another related map = positive, other positions (all, or
    only nearby ones) of every related map = negatives. One masked InfoNCE per chunk of
    anchor maps, as a batched matmul against the padded list of related maps."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    m, _, h, w = maps.shape
    coords = region_positions(h - region + 1, w - region + 1, positions, stride)
    a = coords.shape[0]
    feats = F.normalize(local_regions(maps, coords, region).to(work_dtype(maps)), dim=2)
    device = maps.device
    same_position = torch.eye(a, dtype=torch.bool, device=device)
    other_position = ~same_position
    if negatives == "nearby":
        other_position &= nearby_positions(coords.to(device), num_nearby)
    # Related maps first (stable sort keeps index order); short rows are padded and masked.
    count = related.sum(dim=1)
    width = int(count.max())
    order = torch.argsort((~related).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=device)[None, :] < count[:, None]
    own = order == torch.arange(m, device=device)[:, None]
    step = m if chunk_size is None else chunk_size
    losses, pairs = [], []
    for start in range(0, m, step):
        rows = slice(start, start + step)
        n = feats[rows].shape[0]
        keys = feats[order[rows]].reshape(n, width * a, -1)
        sim = torch.bmm(feats[rows], keys.transpose(1, 2)) / temperature  # (n, A, width * A)
        slot = valid[rows][:, None, :, None]
        positive = slot & ~own[rows][:, None, :, None] & same_position[None, :, None, :]
        eligible = slot & other_position[None, :, None, :]
        shape = (n, a, width, a)
        positive = positive.expand(shape).reshape(n * a, width * a)
        eligible = eligible.expand(shape).reshape(n * a, width * a)
        losses.append(masked_info_nce(sim.reshape(n * a, width * a), positive, eligible))
        pairs.append(positive.sum())
    if len(losses) == 1:
        return losses[0]
    counts = torch.stack(pairs).to(losses[0].dtype)
    # Chunk means weighted by their pair counts = the mean over all pairs.
    return (torch.stack(losses) * counts).sum() / counts.sum().clamp_min(1)


def local_info_nce(
    feat_a: torch.Tensor,
    feat_b: torch.Tensor,
    *,
    temperature: float = 0.1,
    region: int = 3,
    positions: Positions = "paper13",
    negatives: Negatives = "all",
    num_nearby: int = 5,
    stride: int = 1,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Local contrastive loss L_R of Chaitanya et al. (NeurIPS 2020) on decoder maps of two
    intensity-only views of the same slices (positions correspond).

    A region is the K x K block (K = `region`) at a position, flattened to C*K*K values
    (unfold, not average pooling: the paper's and the official code's descriptor keeps the
    layout inside the block, which pooling would wash out) and L2-normalised. For region u at
    position p of one view:

        l(u) = -log( exp(sim(u, u+)/tau) / (exp(sim(u, u+)/tau) + sum_{n in Neg(u)} exp(sim(u, n)/tau)) )

    u+ = the region at p of the other view; Neg(u) = the regions at every other position of
    BOTH views (paper), or only at the `num_nearby` nearest other positions (the official code
    used 5 nearby positions). L_R = mean over both views, every position, every sample.

    Args:
        feat_a, feat_b: (B, C, H, W) maps of view 1 and view 2, row i the same slice.
        temperature: tau > 0.
        region: K, the side of a region in map cells.
        positions: "paper13" (the 13 points of :func:`region_positions`) or "all".
        negatives: "all" (paper) or "nearby" (official code).
        num_nearby: how many nearest positions serve as negatives with "nearby".
        stride: step between positions with positions="all".
        chunk_size: anchor maps (of the 2B) per masked InfoNCE call, to bound memory with
            positions="all"; the result is the same.

    Example:
        >>> fa = torch.randn(2, 8, 12, 12)
        >>> float(local_info_nce(fa, fa)) < float(local_info_nce(fa, torch.randn(2, 8, 12, 12)))
        True
    """
    _check_maps(feat_a, feat_b, region)
    b = feat_a.shape[0]
    # Maps [view 1; view 2]: map i is related to itself and to its other view.
    sample = torch.arange(b, device=feat_a.device).repeat(2)
    related = sample[:, None] == sample[None, :]
    return _related_loss(
        torch.cat([feat_a, feat_b]),
        related,
        temperature=temperature,
        region=region,
        positions=positions,
        negatives=negatives,
        num_nearby=num_nearby,
        stride=stride,
        chunk_size=chunk_size,
    )


def cross_volume_local_info_nce(
    feat_a: torch.Tensor,
    feat_b: torch.Tensor,
    volume: torch.Tensor,
    partition: torch.Tensor,
    *,
    temperature: float = 0.1,
    region: int = 3,
    positions: Positions = "paper13",
    negatives: Negatives = "all",
    num_nearby: int = 5,
    stride: int = 1,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Local contrastive loss L_D of Chaitanya et al. (NeurIPS 2020): as
    :func:`local_info_nce`, and the region at the same position of every view of a slice from
    the SAME partition of ANOTHER volume is also a positive.

    For an anchor region at p of map i, the candidate maps are i's own two views and both
    views of every same-partition slice of another volume. Positives: position p in each of
    those maps (but not the anchor itself); negatives: the other positions (all, or the
    `num_nearby` nearest) of all of them. Every positive pair counts once in the mean.

    Args:
        feat_a, feat_b: (B, C, H, W) maps of two intensity-only views, row i the same slice.
        volume: (B,) volume (or subject) id of each slice.
        partition: (B,) partition index of each slice.
        Others as in :func:`local_info_nce`.

    Example:
        >>> fa, fb = torch.randn(4, 8, 12, 12), torch.randn(4, 8, 12, 12)
        >>> vol, part = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
        >>> cross_volume_local_info_nce(fa, fb, vol, part).shape
        torch.Size([])
    """
    _check_maps(feat_a, feat_b, region)
    b = feat_a.shape[0]
    volume = _labels("volume", volume, b).to(feat_a.device).repeat(2)
    partition = _labels("partition", partition, b).to(feat_a.device).repeat(2)
    sample = torch.arange(b, device=feat_a.device).repeat(2)
    same_slice = sample[:, None] == sample[None, :]
    cross = (partition[:, None] == partition[None, :]) & (volume[:, None] != volume[None, :])
    return _related_loss(
        torch.cat([feat_a, feat_b]),
        same_slice | cross,
        temperature=temperature,
        region=region,
        positions=positions,
        negatives=negatives,
        num_nearby=num_nearby,
        stride=stride,
        chunk_size=chunk_size,
    )
