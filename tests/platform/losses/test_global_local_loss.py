"""Global (G^R, G^D-, G^D) and local (L_R, L_D; paper and nearby negatives) losses of Chaitanya
et al. 2020 against slow loop references written here from the paper's formula, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medssl.platform.losses.global_local import (
    cross_volume_local_info_nce,
    global_info_nce,
    global_masks,
    local_info_nce,
    local_regions,
    nearby_positions,
    region_positions,
)

# ------------------------------------------------------------------------------ global


def _partition_batch(
    volumes: int, partitions: int, views: int, dim: int = 6, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Rows = views x volumes x partitions in a random order; volume ids are not 0..m-1."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randperm(50, generator=gen)[:volumes] + 3
    vol, part, view = [], [], []
    for v in range(views):
        for k in range(volumes):
            for s in range(partitions):
                vol.append(int(ids[k]))
                part.append(s)
                view.append(v)
    order = torch.randperm(len(vol), generator=gen)
    vol_t, part_t, view_t = (torch.tensor(t)[order] for t in (vol, part, view))
    z = torch.randn(len(vol), dim, generator=gen, dtype=torch.float64)
    return z, vol_t, part_t, view_t


def _global_loops(z, vol, part, view, strategy: str, tau: float, anchors=None) -> float:
    """The paper's l(a, p), averaged over all positive pairs, with sets built by rules."""
    z = z.double()
    n = z.shape[0]

    def cos(a: int, b: int) -> float:
        return float(z[a] @ z[b] / (z[a].norm() * z[b].norm()))

    def same_slice(a: int, b: int) -> bool:
        return vol[a] == vol[b] and part[a] == part[b] and view[a] != view[b]

    def positive(a: int, p: int) -> bool:
        if a == p:
            return False
        if same_slice(a, p):
            return True
        return strategy == "GD" and part[a] == part[p] and vol[a] != vol[p]

    def negative(a: int, k: int) -> bool:
        if k == a or positive(a, k):
            return False
        return strategy == "GR" or part[k] != part[a]

    losses = []
    for a in anchors if anchors is not None else range(n):
        negatives = [math.exp(cos(a, k) / tau) for k in range(n) if negative(a, k)]
        for p in range(n):
            if positive(a, p):
                s = cos(a, p) / tau
                losses.append(-s + math.log(math.exp(s) + sum(negatives)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("strategy", ["GR", "GD-", "GD"])
@pytest.mark.parametrize(
    ("volumes", "partitions", "views"), [(3, 3, 3), (3, 4, 3), (2, 6, 3), (5, 4, 2), (3, 4, 2)]
)
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_global_loss_matches_loops(
    strategy: str, volumes: int, partitions: int, views: int, tau: float
) -> None:
    z, vol, part, view = _partition_batch(volumes, partitions, views)
    loss = global_info_nce(z, vol, part, view, strategy=strategy, temperature=tau)
    assert loss.dtype == torch.float64
    assert float(loss) == pytest.approx(_global_loops(z, vol, part, view, strategy, tau), rel=1e-10)


def test_global_masks_by_hand() -> None:
    # Volumes 0, 1; partitions 0, 1; views 0, 1: rows 0-3 view 0, rows 4-7 view 1.
    vol, part = torch.tensor([0, 0, 1, 1] * 2), torch.tensor([0, 1, 0, 1] * 2)
    view = torch.tensor([0] * 4 + [1] * 4)
    rows = {
        s: [m[0].nonzero().flatten().tolist() for m in global_masks(vol, part, view, s)]
        for s in ("GR", "GD-", "GD")
    }
    assert rows["GR"] == [[4], [1, 2, 3, 4, 5, 6, 7]]
    assert rows["GD-"] == [[4], [1, 3, 5, 7]]
    assert rows["GD"] == [[2, 4, 6], [1, 3, 5, 7]]


def test_global_sample_ids_and_offset() -> None:
    z, vol, part, view = _partition_batch(3, 4, 3, seed=1)
    pairs = torch.stack([vol, part], 1)
    sample = torch.unique(pairs, dim=0, return_inverse=True)[1] * 7 + 2  # any ids work
    base = global_info_nce(z, vol, part, view, strategy="GD")
    assert float(
        global_info_nce(z, vol, part, view, strategy="GD", sample=sample)
    ) == pytest.approx(float(base))
    # Anchors a slice of the keys (one rank of a gathered batch).
    rows = range(12, 24)
    part_loss = global_info_nce(z[12:24], vol, part, view, strategy="GD", keys=z, offset=12)
    assert float(part_loss) == pytest.approx(_global_loops(z, vol, part, view, "GD", 0.1, rows))


def test_global_gradients_flow_and_bad_arguments() -> None:
    z, vol, part, view = _partition_batch(3, 4, 3)
    z = z.float().requires_grad_()
    global_info_nce(z, vol, part, view, strategy="GD").backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="strategy"):
        global_masks(vol, part, view, "GX")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="partition"):
        global_masks(vol, part[:-1], view)
    with pytest.raises(ValueError, match="temperature"):
        global_info_nce(z, vol, part, view, temperature=0.0)


# ------------------------------------------------------------------------------- local


def _coords_loops(rows: int, cols: int, positions: str, stride: int = 1) -> list[tuple[int, int]]:
    if positions == "all":
        return [(r, c) for r in range(0, rows, stride) for c in range(0, cols, stride)]
    h, w = rows - 1, cols - 1
    grid = [(r, c) for r in (0, h // 2, h) for c in (0, w // 2, w)]
    return grid + [(r, c) for r in (h // 4, 3 * h // 4) for c in (w // 4, 3 * w // 4)]


def _nearby_loops(coords: list[tuple[int, int]], count: int) -> list[set[int]]:
    out = []
    for p, (r, c) in enumerate(coords):
        others = sorted(
            (q for q in range(len(coords)) if q != p),
            key=lambda q: ((coords[q][0] - r) ** 2 + (coords[q][1] - c) ** 2, q),
        )
        out.append(set(others[:count]))
    return out


def _local_loops(
    fa: torch.Tensor,
    fb: torch.Tensor,
    k: int,
    positions: str,
    negatives: str,
    tau: float,
    count: int = 5,
    stride: int = 1,
    vol: list[int] | None = None,
    part: list[int] | None = None,
) -> float:
    """Maps (slice b, view v); a region is the flattened k x k block at a top-left corner."""
    b, _, h, w = fa.shape
    coords = _coords_loops(h - k + 1, w - k + 1, positions, stride)
    near = _nearby_loops(coords, count) if negatives == "nearby" else None
    maps = [(s, v) for v in (0, 1) for s in range(b)]

    def region(i: int, p: int) -> torch.Tensor:
        s, v = maps[i]
        r, c = coords[p]
        block = (fa if v == 0 else fb)[s, :, r : r + k, c : c + k].double().reshape(-1)
        return block / block.norm()

    def related(i: int, j: int) -> bool:
        si, sj = maps[i][0], maps[j][0]
        if si == sj:
            return True
        return vol is not None and part[si] == part[sj] and vol[si] != vol[sj]

    losses = []
    for i in range(len(maps)):
        others = [j for j in range(len(maps)) if related(i, j)]
        for p in range(len(coords)):
            u = region(i, p)
            neg = sum(
                math.exp(float(u @ region(j, q)) / tau)
                for j in others
                for q in range(len(coords))
                if q != p and (near is None or q in near[p])
            )
            for j in others:
                if j != i:
                    s = float(u @ region(j, p)) / tau
                    losses.append(-s + math.log(math.exp(s) + neg))
    return sum(losses) / len(losses)


def test_paper_positions_by_hand() -> None:
    # 8 x 8 map, 3 x 3 regions: starts 0..5, so h = w = 5: {0, 2, 5} and quarters {1, 3}.
    expected = [(0, 0), (0, 2), (0, 5), (2, 0), (2, 2), (2, 5), (5, 0), (5, 2), (5, 5)]
    expected += [(1, 1), (1, 3), (3, 1), (3, 3)]
    assert region_positions(6, 6, "paper13").tolist() == [list(p) for p in expected]
    assert region_positions(7, 9, "paper13").tolist() == [
        list(p) for p in _coords_loops(7, 9, "paper13")
    ]
    assert len(region_positions(4, 5, "all", stride=2)) == 6
    with pytest.raises(ValueError, match="at least 5"):
        region_positions(4, 8, "paper13")


def test_regions_are_unfold_columns_and_nearby_sets() -> None:
    feat = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    coords = region_positions(5, 4, "all")
    unfolded = F.unfold(feat, kernel_size=3).transpose(1, 2)  # (N, L, C*9)
    torch.testing.assert_close(local_regions(feat, coords, 3), unfolded)
    coords13 = region_positions(7, 7, "paper13")
    near = nearby_positions(coords13, 5)
    expected = _nearby_loops([tuple(c) for c in coords13.tolist()], 5)
    assert [set(row.nonzero().flatten().tolist()) for row in near] == expected


LOCAL_CASES = [
    # (batch, channels, side, region, positions, negatives, stride)
    (3, 4, 9, 3, "paper13", "all", 1),
    (3, 4, 9, 3, "paper13", "nearby", 1),
    (2, 3, 6, 3, "all", "all", 1),
    (3, 3, 6, 3, "all", "nearby", 1),
    (1, 5, 7, 1, "all", "all", 2),
    (2, 2, 8, 2, "paper13", "all", 1),
]


@pytest.mark.parametrize(("b", "c", "side", "k", "positions", "negatives", "stride"), LOCAL_CASES)
def test_local_loss_matches_loops(
    b: int, c: int, side: int, k: int, positions: str, negatives: str, stride: int
) -> None:
    gen = torch.Generator().manual_seed(b * 100 + side)
    fa = torch.randn(b, c, side, side, generator=gen, dtype=torch.float64)
    fb = fa + 0.5 * torch.randn(b, c, side, side, generator=gen, dtype=torch.float64)
    for tau in (0.1, 0.7):
        loss = local_info_nce(
            fa,
            fb,
            temperature=tau,
            region=k,
            positions=positions,
            negatives=negatives,
            stride=stride,  # type: ignore[arg-type]
        )
        expected = _local_loops(fa, fb, k, positions, negatives, tau, stride=stride)
        assert float(loss) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    ("vol", "part", "positions", "negatives"),
    [
        ([4, 4, 9, 9, 2, 2], [0, 1, 0, 1, 0, 1], "paper13", "all"),
        ([4, 9, 2, 4, 9, 2, 4], [0, 0, 0, 1, 1, 1, 2], "paper13", "nearby"),
        ([0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2], "all", "all"),
    ],
)
def test_cross_volume_local_loss_matches_loops(
    vol: list[int], part: list[int], positions: str, negatives: str
) -> None:
    b = len(vol)
    gen = torch.Generator().manual_seed(b)
    side = 7 if positions == "paper13" else 5
    fa = torch.randn(b, 3, side, side, generator=gen, dtype=torch.float64)
    fb = torch.randn(b, 3, side, side, generator=gen, dtype=torch.float64)
    loss = cross_volume_local_info_nce(
        fa,
        fb,
        torch.tensor(vol),
        torch.tensor(part),
        temperature=0.2,
        positions=positions,
        negatives=negatives,  # type: ignore[arg-type]
    )
    expected = _local_loops(fa, fb, 3, positions, negatives, 0.2, vol=vol, part=part)
    assert float(loss) == pytest.approx(expected, rel=1e-10)
    # Chunking the anchor maps bounds memory without changing the value.
    chunked = cross_volume_local_info_nce(
        fa,
        fb,
        torch.tensor(vol),
        torch.tensor(part),
        temperature=0.2,
        positions=positions,
        negatives=negatives,
        chunk_size=5,  # type: ignore[arg-type]
    )
    assert float(chunked) == pytest.approx(expected, rel=1e-10)


def test_local_chunks_gradients_and_errors() -> None:
    gen = torch.Generator().manual_seed(0)
    fa = torch.randn(3, 4, 8, 8, generator=gen).requires_grad_()
    fb = torch.randn(3, 4, 8, 8, generator=gen).requires_grad_()
    whole = local_info_nce(fa, fb, positions="all")
    chunked = local_info_nce(fa, fb, positions="all", chunk_size=4)
    assert chunked.item() == pytest.approx(whole.item(), rel=1e-5)
    whole.backward()
    for t in (fa, fb):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    # Identical views make the positive the most similar region: lower loss than noise.
    assert local_info_nce(fa, fa).item() < local_info_nce(fa, fb).item()
    with pytest.raises(ValueError, match="equal shapes"):
        local_info_nce(fa, fb[:2])
    with pytest.raises(ValueError, match="negatives"):
        local_info_nce(fa, fb, negatives="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="region"):
        local_info_nce(fa, fb, region=9)
