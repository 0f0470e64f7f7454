"""Whether AutoTCL's learned keep probability p has saturated into a fixed mask: statistics of
p at one augmenter step, and the collapse rule over the records of a pretraining run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from medssl.platform.losses.autotcl import binary_entropy, channel_keep_rate

#: p strictly inside this range leaves the hard-concrete mask random ("undecided"); outside it
#: a step is kept (or dropped) in at least 95 % of the views.
UNDECIDED = (0.05, 0.95)
#: Collapsed: fewer than this fraction of the (step, channel) cells undecided at the end ...
MIN_UNDECIDED = 0.05
#: ... or a channel whose mean p is at most this: it is missing from (nearly) every view.
DROPPED = 0.01
#: "The end of training": the last tenth of the augmenter steps (at least one).
END_FRACTION = 0.1


@torch.no_grad()
def keep_statistics(
    keep: torch.Tensor, steps: torch.Tensor, rows: Sequence[int], in_channels: int
) -> dict[str, Any]:
    """What the keep probabilities p (B, C', T) of one augmenter step look like over the
    observed `steps` (B, T): `keep` (mean p), `entropy` (mean binary entropy of p, bits),
    `undecided` (the fraction of cells with p in `UNDECIDED`), and `channel_keep`, the mean p
    of each of the `in_channels` input channels: row i of `keep` belongs to input channel
    `rows[i]`; one shared row (C' = 1) belongs to all of `rows`; other channels (passed
    through unchanged) read 1.

    Example:
        >>> p = torch.tensor([[[0.0, 0.0], [0.5, 1.0]]])
        >>> keep_statistics(p, torch.ones(1, 2, dtype=torch.bool), [0, 1], 3)["channel_keep"]
        [0.0, 0.75, 1.0]
    """
    if keep.ndim != 3 or steps.shape != (keep.shape[0], keep.shape[2]):
        raise ValueError(
            f"keep must be (B, C', T) and steps (B, T), got {tuple(keep.shape)} and "
            f"{tuple(steps.shape)}"
        )
    if keep.shape[1] not in (1, len(rows)):
        raise ValueError(f"keep has {keep.shape[1]} rows for the {len(rows)} channels {list(rows)}")
    keep = keep.detach().double()
    cells = steps[:, None, :].expand_as(keep)
    low, high = UNDECIDED
    undecided = ((keep > low) & (keep < high))[cells].double().mean()
    rate = channel_keep_rate(keep, steps).tolist()
    channel = [1.0] * in_channels
    for i, c in enumerate(rows):
        channel[c] = rate[i if len(rate) > 1 else 0]
    return {
        "keep": float(keep[cells].mean()),
        "entropy": float(binary_entropy(keep)[cells].mean()),
        "undecided": float(undecided),
        "channel_keep": channel,
    }


def keep_collapse(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The collapse rule over a run's records (`keep_statistics` of each augmenter step, in
    order): the augmenter has collapsed when, averaged over the last `END_FRACTION` of the
    records, fewer than `MIN_UNDECIDED` of the cells are undecided (the mask is fixed), or a
    channel's mean p is at most `DROPPED` (p = 0 throughout: the views never show it).
    The rule reads p as the keep rate, as with the noise on the logit (`mask_noise: logit`);
    with `mask_noise: probability` a step is kept with a probability of 0.48-0.71 whatever p
    is, so a p at 0 or 1 does not fix the mask there.

    Returns `collapsed`, `reasons` (one sentence each), the end averages `keep`, `entropy`,
    `undecided`, `channel_keep` and `channel_min` (their smallest), `channel_lowest` (each
    channel's smallest mean p over all records), `records` and `end_records` (counts).

    Example:
        >>> fixed = {"keep": 0.3, "entropy": 0.0, "undecided": 0.0, "channel_keep": [0.3]}
        >>> keep_collapse([fixed])["collapsed"]
        True
    """
    if not records:
        raise ValueError("no augmenter records: the run made no augmenter step yet")
    end = records[-max(1, int(len(records) * END_FRACTION)) :]

    def mean(key: str) -> float:
        return sum(float(r[key]) for r in end) / len(end)

    channels = len(records[-1]["channel_keep"])
    channel = [sum(float(r["channel_keep"][c]) for r in end) / len(end) for c in range(channels)]
    summary = {
        "keep": mean("keep"),
        "entropy": mean("entropy"),
        "undecided": mean("undecided"),
        "channel_keep": channel,
        "channel_min": min(channel),
        "channel_lowest": [
            min(float(r["channel_keep"][c]) for r in records) for c in range(channels)
        ],
    }
    reasons = []
    if summary["undecided"] < MIN_UNDECIDED:
        reasons.append(
            f"{summary['undecided']:.1%} of the (step, channel) cells have p in "
            f"({UNDECIDED[0]}, {UNDECIDED[1]}) at the end, fewer than {MIN_UNDECIDED:.0%}: the "
            "mask is (nearly) fixed"
        )
    dropped = [c for c, v in enumerate(channel) if v <= DROPPED]
    if dropped:
        reasons.append(
            f"channel(s) {dropped} have mean p <= {DROPPED} at the end: no view shows them"
        )
    return {
        "collapsed": bool(reasons),
        "reasons": reasons,
        **summary,
        "records": len(records),
        "end_records": len(end),
    }
