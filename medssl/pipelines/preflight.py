"""Sizes a run's config alone decides, checked before any data is read: the smallest batch a
pretraining method can train on, the input sides the configured encoder takes, what a method
asks of its input size (`Method.input_problem`), and the window segmentation is scored in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from medssl.modalities.base import Modality
from medssl.pipelines.tasks.segmentation import check_run_roi, run_roi
from medssl.platform.batch import BatchSpec
from medssl.platform.config import PipelineConfig
from medssl.platform.encoders import Encoder, build_encoder
from medssl.platform.engine.trainer import launch_world
from medssl.platform.errors import ConfigError, DataError

#: A pretraining phase as check_compatibility sees it: (its method key, method class, Config).
Phase = tuple[str, Any, Any]


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


def check_input_sizes(config: PipelineConfig, modality: Modality, phases: Sequence[Phase]) -> None:
    """ConfigError naming the key when a size the encoder will be fed is not one it takes
    (the served patch, slice or image size of `Modality.input_size`, each pretraining phase's
    augment.output_size, the segmentation window), or one a phase's method cannot train on.
    `phases`: the phases this run pretrains."""
    warped = [
        (f"{key}.augment.output_size", tuple(size))
        for key, _, settings in phases
        if (size := _output_size(settings)) is not None
    ]
    served = modality.input_size()
    # Views warped to output_size replace the served items in pretraining only.
    fed_as_served = bool({"probe", "finetune"} & set(config.stages)) or len(warped) < len(phases)
    sizes = warped + ([served] if served is not None and fed_as_served else [])
    window = scoring_window(config, modality)
    if not sizes and window is None:
        return
    encoder = sized_encoder(config, modality)
    for key, sides in sizes:
        check_sides(key, sides, encoder)
    for key, cls, settings in phases:
        fed = _output_size(settings) or (served[1] if served is not None else None)
        problem = None if fed is None else cls.input_problem(settings, tuple(fed), encoder)
        if problem:
            raise ConfigError(f"{key}.{problem}")
    if window is not None:
        check_run_roi(window, encoder)


def scoring_window(config: PipelineConfig, modality: Modality) -> tuple[int, ...] | None:
    """The sliding window of a run that scores segmentation (validation while fine-tuning,
    or the evaluate stage), else None; ConfigError naming finetune.roi_size when the config
    sets no window."""
    stages = set(config.stages)
    validates = "finetune" in stages and config.finetune.validation_fraction > 0
    if config.finetune.task != "segmentation" or not (validates or "evaluate" in stages):
        return None
    if "mask" not in modality.provided_fields():
        return None  # no masks, no segmentation: the adapter's own checks say so
    window = run_roi(config, modality)
    if window is None:
        raise ConfigError(
            "finetune.roi_size: segmentation is scored on whole volumes in a sliding window, "
            "and neither it nor data.preprocessing.patch_size is set; set finetune.roi_size, "
            "e.g. [96, 96, 96]"
        )
    return window


def sized_encoder(config: PipelineConfig, modality: Modality) -> Encoder:
    """The configured encoder, built on the CPU outside the run's random stream, to ask which
    input sides it takes."""
    cfg = config.encoder
    with torch.random.fork_rng(devices=[]):
        return build_encoder(
            cfg.name or modality.default_encoder,
            spatial_dims=cfg.spatial_dims,
            in_channels=1,
            **cfg.kwargs,
        )


def check_sides(key: str, sides: Sequence[int], encoder: Encoder) -> None:
    """ConfigError naming `key` when a side of `sides` is not divisible as `encoder` needs,
    with the nearest sizes that are."""
    multiple = int(getattr(encoder, "input_multiple", 1))
    if not any(side % multiple for side in sides):
        return
    below = [max(multiple, side // multiple * multiple) for side in sides]
    above = [-(-side // multiple) * multiple for side in sides]
    fits = f"{below} or {above}" if below != above else f"{above}"
    reason = getattr(encoder, "size_reason", "")
    raise ConfigError(
        f"{key}: {list(sides)} does not fit encoder '{encoder.name}', which needs every side "
        f"divisible by {multiple}{f' ({reason})' if reason else ''}; set it to e.g. {fits}"
    )


def _output_size(settings: Any) -> tuple[int, ...] | None:
    return getattr(getattr(settings, "augment", None), "output_size", None)


def check_item_sizes(config: PipelineConfig, modality: Modality, prepared: Any) -> None:
    """Once the data is prepared: DataError naming the first item fed whole (a volume
    without data.preprocessing.patch_size) whose sides the encoder cannot take, and how many
    more there are, with the patch size to set."""
    sizes = modality.item_sizes(prepared)
    if not sizes:
        return
    stages = set(config.stages)
    # Pretraining views warped to augment.output_size in every phase are not fed whole.
    augments = [phase.method.get("augment") for phase in config.pretrain.phases()]  # type: ignore[attr-defined]
    warped = all(isinstance(a, dict) and a.get("output_size") for a in augments)
    if not ({"probe", "finetune"} & stages or ("pretrain" in stages and not warped)):
        return
    encoder = sized_encoder(config, modality)
    multiple = int(getattr(encoder, "input_multiple", 1))
    bad = [(source, sides) for source, sides in sizes if any(side % multiple for side in sides)]
    if not bad:
        return
    source, sides = bad[0]
    fits = [max(multiple, side // multiple * multiple) for side in sides]
    more = f" (and {len(bad) - 1} more items)" if len(bad) > 1 else ""
    raise DataError(
        f"{source}: fed whole at {list(sides)}{more}, which encoder '{encoder.name}' cannot take "
        f"(every side divisible by {multiple}); set data.preprocessing.patch_size, e.g. {fits}"
    )
