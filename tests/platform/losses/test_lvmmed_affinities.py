"""LVM-Med's batched graph pieces against slow loops over graphs, nodes and cells."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from medssl.platform.augment import ViewGenerator, cell_centres, sample_keys, warp
from medssl.platform.losses.lvmmed import (
    edge_affinity,
    group_rows,
    knn_graph,
    local_affinity,
    normalised_adjacency,
    vertex_affinity,
)
from medssl.platform.methods.lvmmed import GraphConvolution


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = a.norm(), b.norm()
    if na < 1e-8 or nb < 1e-8:
        return 0.0
    return float((a @ b) / (na * nb))


def _knn_loop(z: torch.Tensor, k: int) -> torch.Tensor:
    n = z.shape[0]
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        sims = [(_cos(z[i], z[j]), j) for j in range(n) if j != i]
        for _, j in sorted(sims, reverse=True)[:k]:
            adjacency[i, j] = adjacency[j, i] = 1.0
    return adjacency


def test_knn_graph_matches_a_loop_per_graph() -> None:
    torch.manual_seed(0)
    z = torch.randn(5, 9, 6, dtype=torch.float64)
    batched = knn_graph(z, 3)
    for g in range(5):
        assert torch.equal(batched[g], _knn_loop(z[g], 3))
    assert torch.equal(batched, batched.transpose(1, 2))
    assert batched.diagonal(dim1=1, dim2=2).abs().sum() == 0
    # every node has at least k neighbours; k is clipped to N - 1
    assert (batched.sum(-1) >= 3).all()
    assert torch.equal(knn_graph(z[:, :3], 10)[0], torch.ones(3, 3) - torch.eye(3))


@pytest.mark.parametrize(("width", "residual"), [(6, False), (6, True), (5, True)])
def test_gcn_matches_a_loop_per_graph_and_node(width: int, residual: bool) -> None:
    torch.manual_seed(1)
    z = torch.randn(4, 7, 5, dtype=torch.float64)
    adjacency = knn_graph(z, 2)
    gcn = GraphConvolution(5, width, residual=residual).double()
    batched = gcn(z, normalised_adjacency(adjacency))
    w0, w1 = (layer.weight for layer in gcn.weights)
    skip = torch.eye(5, dtype=torch.float64) if width == 5 else None
    if residual and width != 5:
        skip = gcn.skip.weight  # type: ignore[union-attr]
    for g in range(4):
        a = adjacency[g] + torch.eye(7, dtype=torch.float64)
        degree = a.sum(1)
        prop = torch.zeros(7, 7, dtype=torch.float64)
        for i, j in itertools.product(range(7), range(7)):
            prop[i, j] = a[i, j] / (degree[i] * degree[j]).sqrt()
        h1 = torch.stack([torch.relu(sum(prop[i, j] * (w0 @ z[g, j]) for j in range(7)))
                          for i in range(7)])
        h2 = torch.stack([sum(prop[i, j] * (w1 @ h1[j]) for j in range(7)) for i in range(7)])
        if residual:
            h2 = h2 + torch.stack([skip @ z[g, i] for i in range(7)])
        torch.testing.assert_close(batched[g], h2)


def test_vertex_and_edge_affinities_match_loops() -> None:
    torch.manual_seed(2)
    g, n, d = 3, 5, 4
    zs, zt = torch.randn(g, n, d, dtype=torch.float64), torch.randn(g, n, d, dtype=torch.float64)
    adj_s, adj_t = knn_graph(zs, 2), knn_graph(zt, 2)
    local = torch.rand(g, n, n, dtype=torch.float64)
    unary = vertex_affinity(zs, zt, local, alpha=0.7)
    quadratic = edge_affinity(zs, zt, adj_s, adj_t)
    assert quadratic.shape == (g, n * n, n * n)
    for b in range(g):
        for i, a in itertools.product(range(n), range(n)):
            want = 0.7 * _cos(zs[b, i], zt[b, a]) + 0.3 * float(local[b, i, a])
            assert float(unary[b, i, a]) == pytest.approx(want, abs=1e-12)
        for i, a, j, bb in itertools.product(range(n), repeat=4):
            edge = adj_s[b, i, j] * adj_t[b, a, bb]
            want = _cos(zs[b, i] - zs[b, j], zt[b, a] - zt[b, bb]) if edge else 0.0
            assert float(quadratic[b, i * n + a, j * n + bb]) == pytest.approx(want, abs=1e-12)
    torch.testing.assert_close(quadratic, quadratic.transpose(1, 2))
    torch.testing.assert_close(vertex_affinity(zs, zt, None), F.cosine_similarity(
        zs[:, :, None], zt[:, None], dim=-1))


def test_local_affinity_matches_a_loop_over_pairs_and_cells() -> None:
    torch.manual_seed(3)
    g, n, p, c = 2, 3, 6, 4
    maps_s = torch.randn(g, n, p, c, dtype=torch.float64)
    maps_t = torch.randn(g, n, p, c, dtype=torch.float64)
    cells_s = torch.rand(g, n, p, 2, dtype=torch.float64)
    cells_t = torch.rand(g, n, p, 2, dtype=torch.float64)
    batched = local_affinity(maps_s, maps_t, cells_s, cells_t, keep=0.5)
    kept = 3
    for b, i, a in itertools.product(range(g), range(n), range(n)):
        by_location, by_feature = [], []
        for q in range(p):
            dist = [float((cells_s[b, i, q] - cells_t[b, a, r]).norm()) for r in range(p)]
            r_near = min(range(p), key=lambda r, dist=dist: dist[r])
            by_location.append((dist[r_near], _cos(maps_s[b, i, q], maps_t[b, a, r_near])))
            by_feature.append(max(_cos(maps_s[b, i, q], maps_t[b, a, r]) for r in range(p)))
        location = sum(s for _, s in sorted(by_location)[:kept]) / kept
        feature = sum(sorted(by_feature, reverse=True)[:kept]) / kept
        assert float(batched[b, i, a]) == pytest.approx((location + feature) / 2, abs=1e-12)


def test_local_affinity_of_a_map_with_itself_is_one() -> None:
    maps = torch.randn(1, 2, 4, 3)
    cells = torch.rand(1, 2, 4, 2)
    local = local_affinity(maps, maps, cells, cells, keep=1.0)
    torch.testing.assert_close(local.diagonal(dim1=1, dim2=2), torch.ones(1, 2))


@pytest.mark.parametrize("rotate", [0.0, 30.0])
def test_cell_centres_are_where_the_view_sampled_the_input(rotate: float) -> None:
    """A view of an image whose pixels hold their own coordinates shows, at each pixel, the
    input position `cell_centres` assigns to that cell (bilinear sampling of a linear ramp is
    exact away from the borders)."""
    size = (24, 20)
    rows = (torch.arange(size[0]) + 0.5) / size[0]
    cols = (torch.arange(size[1]) + 0.5) / size[1]
    coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))[None].repeat(6, 1, 1, 1)
    make = ViewGenerator({
        "crop_scale": (0.2, 0.5), "flip_prob": 0.5, "rotate_degrees": rotate,
        "scale_range": (1.0, 1.0), "output_size": (8, 8),
    })
    views = make.generate(coords.double(), sample_keys(torch.arange(6), 0, 0, 0))
    sampled = warp(coords.double(), views.geometry.theta, (8, 8))  # no intensity steps
    centres = views.cell_centres((8, 8))
    assert centres.shape == (6, 64, 2)
    # rotated corners may fall outside the input, where the border padding clamps
    half_pixel = 0.5 / torch.tensor(size, dtype=centres.dtype)
    inside = ((centres >= half_pixel) & (centres <= 1 - half_pixel)).all(-1)
    assert inside.float().mean() > 0.8
    shown = sampled.flatten(2).transpose(1, 2)
    torch.testing.assert_close(shown[inside].float(), centres[inside].float(), atol=1e-5, rtol=0)
    assert views.geometry.flip.any()  # the flips were exercised
    torch.testing.assert_close(cell_centres(views.geometry.theta, (8, 8)), centres)


def test_group_rows_names_the_batch_size_key_when_too_small() -> None:
    with pytest.raises(ValueError, match="pretrain.batch_size"):
        group_rows(torch.zeros(3, 2), 4)
