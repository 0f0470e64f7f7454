"""The affinities of LVM-Med's second-order graph matching (Nguyen et al., NeurIPS 2023,
"LVM-Med: Learning Large-Scale Self-Supervised Vision Models for Medical Imaging via
Second-order Graph Matching"), batched over graphs.

A batch of two views is split into G graphs of N images each. Per view and graph: a kNN graph
over the projected embeddings, message passing, then the two affinities of the quadratic
assignment between the view-s graph and the view-t graph:

    vertex  c_v[i, a]           = alpha * cos(zs_i, zt_a) + (1 - alpha) * local(ys_i, yt_a)
    edge    c_e[(i, j), (a, b)] = cos(zs_i - zs_j, zt_a - zt_b)  for edges (i, j), (a, b)

Every function takes (G, N, ...) tensors and has no Python loop over graphs, nodes or cells.
The solver and its gradient live in `medssl.platform.solvers`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_EPS = 1e-8


def _check_groups(name: str, x: torch.Tensor, ndim: int) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions (G, N, ...), got {tuple(x.shape)}")


def group_rows(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B, ...) -> (B // group_size, group_size, ...): consecutive rows form a graph; rows past
    the last full graph are dropped.

    Example:
        >>> group_rows(torch.arange(7), 3)
        tensor([[0, 1, 2],
                [3, 4, 5]])
    """
    groups = x.shape[0] // group_size
    if groups < 1:
        raise ValueError(
            f"a batch of {x.shape[0]} rows holds no graph of {group_size} images; make "
            "pretrain.batch_size at least pretrain.method.group_size (per process)"
        )
    return x[: groups * group_size].reshape(groups, group_size, *x.shape[1:])


def knn_graph(z: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetric kNN adjacency per graph from cosine similarity, without self-loops.

    Node i links to its k most similar other nodes; (i, j) is an edge when either chose the
    other. The graph is built on detached embeddings (a discrete choice carries no gradient).

    Args:
        z: (G, N, D) node embeddings.
        k: neighbours per node (clipped to N - 1).

    Returns:
        (G, N, N) float 0/1 adjacency in z's dtype, symmetric, zero diagonal.

    Example:
        >>> z = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]])
        >>> knn_graph(z, 1)[0]
        tensor([[0., 1., 0.],
                [1., 0., 1.],
                [0., 1., 0.]])
    """
    _check_groups("z", z, 3)
    n = z.shape[1]
    k = min(int(k), n - 1)
    adjacency = torch.zeros(z.shape[0], n, n, dtype=z.dtype, device=z.device)
    if k < 1:
        return adjacency
    unit = F.normalize(z.detach(), dim=-1)
    similarity = unit @ unit.transpose(1, 2)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(eye, -math.inf)
    neighbours = similarity.topk(k, dim=-1).indices
    adjacency.scatter_(2, neighbours, 1.0)
    return torch.maximum(adjacency, adjacency.transpose(1, 2))


def normalised_adjacency(adjacency: torch.Tensor) -> torch.Tensor:
    """Kipf & Welling's propagation matrix D^-1/2 (A + I) D^-1/2, D the degree of A + I.

    Example:
        >>> a = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
        >>> normalised_adjacency(a)[0]
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]])
    """
    _check_groups("adjacency", adjacency, 3)
    eye = torch.eye(adjacency.shape[1], dtype=adjacency.dtype, device=adjacency.device)
    with_self = adjacency + eye
    inv_sqrt = with_self.sum(dim=-1).rsqrt()
    return inv_sqrt[:, :, None] * with_self * inv_sqrt[:, None, :]


def cosine_matrix(zs: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """(G, N, M) cosine similarity of every node of graph s with every node of graph t."""
    _check_groups("zs", zs, 3)
    _check_groups("zt", zt, 3)
    return F.normalize(zs, dim=-1, eps=_EPS) @ F.normalize(zt, dim=-1, eps=_EPS).transpose(1, 2)


def _top_mean(values: torch.Tensor, keep: int, largest: bool, scores: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis of `values` at the `keep` entries whose `scores` are largest
    (or smallest)."""
    chosen = scores.topk(keep, dim=-1, largest=largest).indices
    return values.gather(-1, chosen).mean(dim=-1)


def local_affinity(
    maps_s: torch.Tensor,
    maps_t: torch.Tensor,
    cells_s: torch.Tensor,
    cells_t: torch.Tensor,
    keep: float = 0.5,
) -> torch.Tensor:
    """LVM-Med's local similarity of every pair (i, a): the mean of a location-based and a
    feature-based cell matching between feature maps ys_i and yt_a.

    Location-based: each cell of ys_i is matched to the cell of yt_a whose centre lies closest
    in original-image coordinates (the crop geometry of each view); feature-based: each cell is
    matched to its most similar cell. In both, the `keep` fraction of best-matching cells
    (closest, respectively most similar) is kept and the cosines of their matches averaged.

    Args:
        maps_s, maps_t: (G, N, P, C) the P cells of each image's feature map, C channels.
        cells_s, cells_t: (G, N, P, n) each cell centre in original-image coordinates (from
            `medssl.platform.augment.cell_centres`).
        keep: fraction of cells kept, in (0, 1]; at least one cell is kept.

    Returns:
        (G, N, N) local affinities in [-1, 1].
    """
    for name, value in (("maps_s", maps_s), ("maps_t", maps_t)):
        _check_groups(name, value, 4)
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    cells = maps_s.shape[2]
    kept = max(1, math.ceil(keep * cells))
    unit_s = F.normalize(maps_s, dim=-1, eps=_EPS)
    unit_t = F.normalize(maps_t, dim=-1, eps=_EPS)
    # (G, N, N, P, P): cosine of cell p of image i (view s) and cell q of image a (view t).
    similarity = torch.einsum("gipc,gaqc->giapq", unit_s, unit_t)
    # (G, N, N, P, P): distance between the two cells' centres in original-image coordinates.
    offset = cells_s[:, :, None, :, None, :] - cells_t[:, None, :, None, :, :]
    distance = offset.to(similarity.dtype).norm(dim=-1)
    nearest_distance, nearest = distance.min(dim=-1)
    at_nearest = similarity.gather(-1, nearest[..., None]).squeeze(-1)
    by_location = _top_mean(at_nearest, kept, largest=False, scores=nearest_distance)
    best = similarity.max(dim=-1).values
    by_feature = _top_mean(best, kept, largest=True, scores=best)
    return (by_location + by_feature) / 2.0


def vertex_affinity(
    zs: torch.Tensor, zt: torch.Tensor, local: torch.Tensor | None, alpha: float = 0.8
) -> torch.Tensor:
    """c_v = alpha * cos(zs_i, zt_a) + (1 - alpha) * local[i, a] (just the cosine when `local`
    is None): (G, N, N).

    Example:
        >>> z = torch.eye(2)[None]
        >>> vertex_affinity(z, z, torch.zeros(1, 2, 2), alpha=0.5)[0]
        tensor([[0.5000, 0.0000],
                [0.0000, 0.5000]])
    """
    cosine = cosine_matrix(zs, zt)
    if local is None:
        return cosine
    return alpha * cosine + (1.0 - alpha) * local


def edge_affinity(
    zs: torch.Tensor, zt: torch.Tensor, adjacency_s: torch.Tensor, adjacency_t: torch.Tensor
) -> torch.Tensor:
    """The second-order affinity as the Lawler QAP matrix of each graph pair:

        K[(i, a), (j, b)] = cos(zs_i - zs_j, zt_a - zt_b)  if (i, j) in E_s and (a, b) in E_t,
                            0 otherwise,

    with (i, a) flattened row-major to i * N + a (the solvers' convention).

    Args:
        zs, zt: (G, N, D) node embeddings of the two views.
        adjacency_s, adjacency_t: (G, N, N) 0/1 adjacency of each view's graph.

    Returns:
        (G, N * N, N * N), symmetric when both adjacencies are.

    Example:
        >>> z = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
        >>> a = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
        >>> edge_affinity(z, z, a, a)[0]
        tensor([[ 0.,  0.,  0.,  1.],
                [ 0.,  0., -1.,  0.],
                [ 0., -1.,  0.,  0.],
                [ 1.,  0.,  0.,  0.]])
    """
    for name, value in (("zs", zs), ("zt", zt), ("adjacency_s", adjacency_s)):
        _check_groups(name, value, 3)
    g, n = zs.shape[:2]
    diff_s = F.normalize(zs[:, :, None] - zs[:, None, :], dim=-1, eps=_EPS)  # (G, N, N, D)
    diff_t = F.normalize(zt[:, :, None] - zt[:, None, :], dim=-1, eps=_EPS)
    # (G, i, j, a, b) -> mask -> (G, i, a, j, b)
    cosine = torch.einsum("gijd,gabd->gijab", diff_s, diff_t)
    mask = adjacency_s[:, :, :, None, None] * adjacency_t[:, None, None, :, :]
    return (cosine * mask).permute(0, 1, 3, 2, 4).reshape(g, n * n, n * n)
