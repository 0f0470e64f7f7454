"""Initialising a downstream model's encoder from pretrained weights: only the encoder half
is copied, everything else (decoder, heads) starts fresh, and the counts are reported."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from medssl.platform.encoders.base import Encoder
from medssl.platform.errors import CheckpointError

log = logging.getLogger("medssl")

#: Prefix under which a Method or a SegmentationNet keeps its encoder's weights.
WRAPPED_PREFIX = "encoder."


@dataclass
class InitReport:
    """What `load_encoder_weights` copied: encoder keys loaded from the pretrained state,
    encoder keys it lacked (left at their fresh values), and how many pretrained keys were
    not used (a projector, a decoder)."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: int = 0

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} encoder tensors, {len(self.missing)} missing "
            f"(kept fresh), {self.unused} pretrained tensors unused"
        )


def _selected(key: str, prefixes: Sequence[str] | None) -> bool:
    if prefixes is None:
        return True
    for prefix in prefixes:
        # A prefix without a trailing dot still stops at a module boundary, so "down_1"
        # does not also claim "down_10".
        if prefix.endswith(".") and key.startswith(prefix):
            return True
        if key == prefix or key.startswith(prefix + "."):
            return True
    return False


def load_encoder_weights(
    encoder: Encoder,
    state: Mapping[str, torch.Tensor],
    prefixes: Sequence[str] | None = None,
) -> InitReport:
    """Copy the pretrained tensors of `encoder`'s keys under `prefixes` (all keys when None).

    `state` may be an encoder state dict or one that wraps it under "encoder." (a Method's
    or a SegmentationNet's). Raises CheckpointError when a shape differs or when the state
    holds none of the wanted tensors.
    """
    own = encoder.state_dict()
    wanted = [k for k in own if _selected(k, prefixes)]
    if not wanted:
        raise ValueError(f"encoder '{encoder.name}' has no weights under the prefixes {prefixes}")
    merged = dict(own)
    report = InitReport()
    used: set[str] = set()
    for key in wanted:
        source = key if key in state else WRAPPED_PREFIX + key
        if source not in state:
            report.missing.append(key)
            continue
        value = torch.as_tensor(state[source])
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"pretrained tensor '{source}' has shape {tuple(value.shape)} but encoder "
                f"'{encoder.name}' expects {tuple(own[key].shape)}; the checkpoint was made "
                "with other encoder.kwargs"
            )
        merged[key] = value.to(dtype=own[key].dtype)
        report.loaded.append(key)
        used.add(source)
    if not report.loaded:
        raise CheckpointError(
            f"the pretrained state holds none of the {len(wanted)} encoder tensors of "
            f"'{encoder.name}' (e.g. '{wanted[0]}'); it was saved from another architecture"
        )
    encoder.load_state_dict(merged)
    report.unused = len(set(state) - used)
    log.info("encoder initialisation: %s", report.summary())
    return report


def selected_parameter_names(encoder: Encoder, prefix: str = "") -> set[str]:
    """Names (with `prefix`) of the encoder's parameters under its `encoder_prefixes` (all of
    them when it declares none): the part a pretrained checkpoint initialises."""
    prefixes = encoder.encoder_prefixes or None
    return {prefix + name for name, _ in encoder.named_parameters() if _selected(name, prefixes)}
