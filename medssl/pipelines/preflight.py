"""Sizes a run's config alone decides, checked before any data is read: the smallest batch a
pretraining method can train on (more checks of the same kind join it here)."""

from __future__ import annotations

from medssl.platform.batch import BatchSpec
from medssl.platform.engine.trainer import launch_world
from medssl.platform.errors import ConfigError


def check_batch_size(method_key: str, batch_size: int, method: str, spec: BatchSpec) -> None:
    """ConfigError naming the phase's batch_size (beside `method_key`, where its method is
    set) when the global batch leaves a process fewer items than `spec.min_size`."""
    world = launch_world()[1]
    need = spec.min_size * world
    if batch_size >= need:
        return
    per_process = f" ({spec.min_size} per process x {world} processes)" if world > 1 else ""
    key = method_key.removesuffix(".method") + ".batch_size"
    raise ConfigError(
        f"{key}: {batch_size} is too small for method '{method}', which trains on batches of "
        f"at least {need} items{per_process}; set {key} to {need} or more"
    )
