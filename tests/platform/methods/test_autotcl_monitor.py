"""The AutoTCL keep-probability monitor: one step's statistics against loops (padding, fixed
channels, a shared gate) and the collapse rule on synthetic records."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.platform.methods.autotcl_monitor import keep_collapse, keep_statistics


def _entropy_bits(q: float) -> float:
    q = min(max(q, 1e-6), 1 - 1e-6)
    return -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def _keep(b: int, c: int, t: int) -> torch.Tensor:
    p = torch.sigmoid(3 * torch.randn(b, c, t, generator=torch.Generator().manual_seed(c)))
    p[0, 0, :3] = torch.tensor([0.05, 0.95, 0.5])  # the bounds are not undecided
    return p


@pytest.mark.parametrize(
    ("rows", "in_channels", "c"),
    [([0, 1, 2], 3, 3), ([1, 3], 4, 2), ([0, 2], 3, 1)],  # all, fixed 0 and 2, shared gate
)
def test_keep_statistics_match_loops(rows: list[int], in_channels: int, c: int) -> None:
    b, t = 3, 9
    p = _keep(b, c, t)
    steps = torch.ones(b, t, dtype=torch.bool)
    steps[1, 5:] = False
    got = keep_statistics(p, steps, rows, in_channels)
    cells = [
        float(p[i, j, k]) for i in range(b) for j in range(c) for k in range(t) if steps[i, k]
    ]
    assert got["keep"] == pytest.approx(sum(cells) / len(cells), abs=1e-6)
    assert got["entropy"] == pytest.approx(
        sum(_entropy_bits(q) for q in cells) / len(cells), abs=1e-6
    )
    undecided = [q for q in cells if 0.05 < q < 0.95]
    assert got["undecided"] == pytest.approx(len(undecided) / len(cells))
    expected = [1.0] * in_channels
    for j, channel in enumerate(rows):
        row = j if c > 1 else 0
        kept = [float(p[i, row, k]) for i in range(b) for k in range(t) if steps[i, k]]
        expected[channel] = sum(kept) / len(kept)
    assert got["channel_keep"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="rows for the"):
        keep_statistics(torch.rand(1, 2, 4), torch.ones(1, 4, dtype=torch.bool), [0, 1, 2], 3)


def _record(step: int, undecided: float, channel_keep: list[float]) -> dict:
    keep = sum(channel_keep) / len(channel_keep)
    return {"step": step, "keep": keep, "entropy": undecided, "undecided": undecided,
            "channel_keep": channel_keep}  # fmt: skip


def test_collapse_rule_on_synthetic_records() -> None:
    # Undecided early, fixed for the last tenth: collapsed (the end decides, not the start).
    fixing = [_record(s, 0.9 if s < 90 else 0.01, [0.4, 0.3]) for s in range(100)]
    verdict = keep_collapse(fixing)
    assert verdict["collapsed"] and verdict["end_records"] == 10 and verdict["records"] == 100
    assert verdict["undecided"] == pytest.approx(0.01)
    assert "fewer than 5%" in verdict["reasons"][0]
    # Just above the 5 % bound, every channel shown: not collapsed.
    healthy = [_record(s, 0.06, [0.4, 0.3]) for s in range(20)]
    assert not keep_collapse(healthy)["collapsed"] and keep_collapse(healthy)["reasons"] == []
    # Undecided enough on average, but channel 1 is dropped from every view: collapsed.
    dropping = [_record(s, 0.5, [0.6, 0.3 if s < 15 else 0.005]) for s in range(20)]
    verdict = keep_collapse(dropping)
    assert verdict["collapsed"] and verdict["reasons"] == [
        "channel(s) [1] have mean p <= 0.01 at the end: no view shows them"
    ]
    assert verdict["channel_min"] == pytest.approx(0.005)
    assert verdict["channel_keep"] == pytest.approx([0.6, 0.005])
    assert verdict["channel_lowest"] == pytest.approx([0.6, 0.005])
    # A channel that was dropped for a while but is shown at the end does not count.
    back = [_record(s, 0.5, [0.6, 0.0 if s < 15 else 0.2]) for s in range(20)]
    verdict = keep_collapse(back)
    assert not verdict["collapsed"] and verdict["channel_lowest"] == pytest.approx([0.6, 0.0])
    with pytest.raises(ValueError, match="no augmenter records"):
        keep_collapse([])
