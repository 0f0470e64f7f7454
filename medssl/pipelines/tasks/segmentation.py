"""The segmentation task: an encoder-decoder with a 1x1 head, Dice + cross-entropy on patches,
and sliding-window evaluation over whole volumes reporting Dice and HD95 (mm) per label."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from torch.utils.data import Dataset

from medssl.pipelines.tasks.pretrained import load_encoder_weights
from medssl.platform.encoders.base import Encoder, SegmentationNet
from medssl.platform.engine.progress import tracked
from medssl.platform.engine.supervised import SupervisedModule
from medssl.platform.errors import ConfigError
from medssl.platform.evaluation.features import module_device
from medssl.platform.evaluation.metrics import dice_per_label, nanmean, segmentation_scores
from medssl.platform.registry import TASKS

#: Fraction by which neighbouring sliding windows overlap.
WINDOW_OVERLAP = 0.25


def build_segmenter(
    encoder: Encoder,
    num_classes: int,
    pretrained_state: Mapping[str, torch.Tensor] | None = None,
    keys: Sequence[str] | None = None,
) -> SegmentationNet:
    """`SegmentationNet(encoder, num_classes)`; with `pretrained_state`, the tensors named in
    `keys` (what pretraining changed: the encoder, and decoder blocks a local stage trained)
    or else those under `encoder.encoder_prefixes` are copied from it; the rest of the
    decoder and the head stay fresh. The copy counts are kept as `model.init_report` (None
    without a pretrained state)."""
    model = SegmentationNet(encoder, num_classes)
    model.init_report = None
    if pretrained_state is not None and keys:
        model.init_report = load_encoder_weights(encoder, pretrained_state, keys)
    elif pretrained_state is not None:
        if not encoder.encoder_prefixes:
            raise ValueError(
                f"encoder '{encoder.name}' declares no encoder_prefixes, so its pretrained "
                "encoder half cannot be told from its decoder"
            )
        model.init_report = load_encoder_weights(
            encoder, pretrained_state, encoder.encoder_prefixes
        )
    return model


def foreground_dice(logits: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean foreground Dice of a batch of logits (B, K, *spatial) against masks (B, 1, *spatial),
    averaged over samples and the labels present in each (a cheap validation signal)."""
    pred = logits.argmax(dim=1).cpu()
    truth = mask[:, 0].cpu()
    scores = [dice_per_label(p, t, logits.shape[1]) for p, t in zip(pred, truth, strict=True)]
    return nanmean(np.concatenate(scores))


def _check_roi(roi_size: Sequence[int]) -> tuple[int, ...]:
    roi = tuple(int(r) for r in roi_size)
    if len(roi) not in (2, 3) or any(r < 1 for r in roi):
        raise ValueError(f"roi_size must be 2 or 3 positive window sides, got {list(roi_size)}")
    return roi


def check_run_roi(roi_size: Sequence[int], encoder: Encoder) -> None:
    """ConfigError naming `finetune.roi_size` (its default: the patch or slice size) when the
    sliding window is not 2 or 3 positive sides, or is not a size the encoder takes."""
    try:
        roi = _check_roi(roi_size)
    except ValueError as exc:
        raise ConfigError(f"finetune.roi_size: {exc}; set it to e.g. [96, 96, 96]") from None
    multiple = int(getattr(encoder, "input_multiple", 1))
    sides = roi[: encoder.spatial_dims]
    if len(sides) < encoder.spatial_dims or any(side % multiple for side in sides):
        # A 2-D model's window is slices deep: only its first two sides pass the encoder.
        fitted = [
            max(multiple, -(-side // multiple) * multiple) if axis < encoder.spatial_dims else side
            for axis, side in enumerate(roi)
        ]
        raise ConfigError(
            f"finetune.roi_size: the window {list(roi)} does not fit encoder '{encoder.name}' "
            f"({encoder.spatial_dims}-D, sides divisible by {multiple}); set finetune.roi_size "
            f"to e.g. {fitted}"
        )


def _entries(data: Any) -> Iterator[Mapping[str, Any]]:
    # A map-style Dataset need not raise IndexError at its end, so it is indexed explicitly.
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return (data[i] for i in range(len(data)))
    return iter(data)


def _volumes(
    data: Iterable[Mapping[str, Any]], n_spatial: int, spacing_key: str | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray | None]]:
    """(x (1, C, *spatial), mask (*spatial), spacing or None) of every volume in items or
    collated batches."""
    for entry in _entries(data):
        x = torch.as_tensor(entry["x"])
        if "mask" not in entry:
            raise KeyError("segmentation evaluation needs a 'mask' in every item")
        mask = torch.as_tensor(entry["mask"])
        spacing = None
        if spacing_key is not None:
            if spacing_key not in entry:
                raise KeyError(
                    f"items have no '{spacing_key}' field; pass spacing_key=None for HD95 in voxels"
                )
            spacing = np.asarray(torch.as_tensor(entry[spacing_key]).cpu(), dtype=np.float64)
        if x.ndim == n_spatial + 1:  # one item: add the batch axis
            x, mask = x[None], mask[None]
            spacing = None if spacing is None else spacing[None]
        if x.ndim != n_spatial + 2:
            raise ValueError(
                f"x of shape {tuple(x.shape)} is neither an item (C, *spatial) nor a batch "
                f"(B, C, *spatial) for a {n_spatial}D roi_size"
            )
        for b in range(x.shape[0]):
            m = mask[b].reshape(mask.shape[-n_spatial:]) if mask[b].ndim > n_spatial else mask[b]
            if tuple(m.shape) != tuple(x.shape[2:]):
                raise ValueError(
                    f"mask {tuple(mask[b].shape)} does not match image {tuple(x[b].shape)}"
                )
            yield x[b : b + 1], m, None if spacing is None else spacing[b]


class SliceWise(torch.nn.Module):
    """A 2-D segmenter applied to every axial slice of a volume: (B, C, X, Y, Z) in,
    (B, K, X, Y, Z) logits out, so volumes are scored in 3-D whatever the network saw."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *plane, depth = x.shape
        slices = x.permute(0, 4, 1, 2, 3).reshape(b * depth, c, *plane)
        logits = self.model(slices)
        return logits.reshape(b, depth, -1, *plane).permute(0, 2, 3, 4, 1)


#: Slices per sliding window when a 2-D segmenter is scored on volumes.
SLICES_PER_WINDOW = 8


def evaluate_segmentation(
    model: torch.nn.Module,
    items: Iterable[Mapping[str, Any]],
    roi_size: Sequence[int],
    num_classes: int,
    spacing_key: str | None = "spacing",
    *,
    sw_batch_size: int = 1,
) -> dict[str, Any]:
    """Sliding-window inference (MONAI, overlap 0.25, Gaussian blending) over whole volumes,
    then Dice and HD95 per foreground label (see medssl.platform.evaluation.metrics for labels
    absent from a volume).

    `items` yields per-volume dicts (x (C, *spatial), mask (1, *spatial), spacing (n,)) or
    collated batches of them. HD95 is in the units of `spacing_key` (mm); None means voxels.

    Returns {"mean_dice", "mean_hd95", "dice": {label: mean}, "hd95": {label: mean},
    "n_volumes", "per_volume": [{"dice": [...], "hd95": [...]}]}; per-label values are means
    over the volumes where the label is defined, the means over labels.
    """
    roi = _check_roi(roi_size)
    device = module_device(model)
    was_training = model.training
    model.eval()
    dice_rows, hd_rows = [], []
    try:
        with torch.no_grad():
            for x, mask, spacing in _volumes(items, len(roi), spacing_key):
                logits = sliding_window_inference(
                    x.float().to(device),
                    roi,
                    sw_batch_size,
                    model,
                    overlap=WINDOW_OVERLAP,
                    mode="gaussian",
                )
                pred = torch.as_tensor(logits).argmax(dim=1)[0].cpu()
                scores = segmentation_scores(pred, mask.cpu(), num_classes, spacing=spacing)
                dice_rows.append(scores["dice"])
                hd_rows.append(scores["hd95"])
    finally:
        model.train(was_training)
    if not dice_rows:
        raise ValueError("no volumes to evaluate; the hold-out set is empty")
    labels = range(1, num_classes)
    dice = {lab: nanmean([r[i] for r in dice_rows]) for i, lab in enumerate(labels)}
    hd95 = {lab: nanmean([r[i] for r in hd_rows]) for i, lab in enumerate(labels)}
    return {
        "mean_dice": nanmean(list(dice.values())),
        "mean_hd95": nanmean(list(hd95.values())),
        "dice": dice,
        "hd95": hd95,
        "n_volumes": len(dice_rows),
        "per_volume": [
            {"dice": d.tolist(), "hd95": h.tolist()}
            for d, h in zip(dice_rows, hd_rows, strict=True)
        ],
    }


@TASKS.register("segmentation")
class SegmentationTask:
    """Dense labelling of volumes or images: `SegmentationNet` trained with Dice + CE
    (MONAI DiceCELoss, one-hot targets, softmax) on patches of `x` and `mask`."""

    name: ClassVar[str] = "segmentation"
    purpose: ClassVar[str] = "segmentation"
    target_key: ClassVar[str] = "mask"
    selection_metric: ClassVar[tuple[str, bool]] = ("mean_dice", True)

    def build_model(
        self,
        encoder: Encoder,
        num_classes: int,
        pretrained_state: Mapping[str, torch.Tensor] | None = None,
        keys: Sequence[str] | None = None,
    ) -> SegmentationNet:
        return build_segmenter(encoder, num_classes, pretrained_state, keys)

    def loss(self) -> torch.nn.Module:
        return DiceCELoss(to_onehot_y=True, softmax=True)

    def module(self, model: torch.nn.Module, **optim: Any) -> SupervisedModule:
        """A SupervisedModule wired with this task's loss, target and validation Dice."""
        return SupervisedModule(
            model,
            self.loss(),
            target_key=self.target_key,
            val_metric=foreground_dice,
            val_metric_name="dice",
            **optim,
        )

    def evaluate(
        self,
        model: SegmentationNet,
        data: Any,
        indices: Sequence[int] | None = None,
        *,
        roi_size: Sequence[int] | None = None,
        num_classes: int | None = None,
        spacing_key: str | None = "spacing",
        progress: str | None = None,
    ) -> dict[str, float]:
        """Flat metrics for reports: mean_dice, mean_hd95, dice/<label>, hd95/<label>.

        `data` is items or a loader of whole volumes; or a run context, with `indices` naming
        the volumes, from which the "evaluate" dataset and `finetune.roi_size` are taken.
        `num_classes` defaults to the head's output channels. With `progress` (a label) and
        `indices`, the volumes scored are reported as they go (`tracked`).
        """
        net: torch.nn.Module = model
        if indices is not None:
            roi_size = roi_size or run_roi(data.config, data.modality)
            data = data.dataset(list(indices), "evaluate")
            if progress:
                data = tracked(data, progress, unit="volume")
            if roi_size is None:
                raise ConfigError(
                    "finetune.roi_size: set the sliding-window size for segmentation "
                    "evaluation, e.g. [96, 96, 96]"
                )
            check_run_roi(roi_size, model.encoder)
        if roi_size is None:
            raise ValueError("roi_size is needed for sliding-window evaluation")
        if model.encoder.spatial_dims == 2 and len(roi_size) == 3:
            net = SliceWise(model)  # a slice model scored on whole volumes
        classes = num_classes or int(model.head.out_channels)
        result = evaluate_segmentation(net, data, roi_size, classes, spacing_key)
        flat = {"mean_dice": result["mean_dice"], "mean_hd95": result["mean_hd95"]}
        flat.update({f"dice/{k}": v for k, v in result["dice"].items()})
        flat.update({f"hd95/{k}": v for k, v in result["hd95"].items()})
        return flat

    def validation_score(self, model: SegmentationNet, ctx: Any, indices: Sequence[int]) -> float:
        """Mean foreground Dice (sliding window) on the volumes `indices` (higher is better)."""
        return float(self.evaluate(model, ctx, indices, progress="validate")["mean_dice"])


def run_roi(config: Any, modality: Any) -> tuple[int, ...] | None:
    """The window a run scores segmentation in: finetune.roi_size, else the patch size, else
    for a 2-D segmenter on volumes the slice size, `SLICES_PER_WINDOW` slices deep; None when
    the config sets none of them."""
    if config.finetune.roi_size:
        return tuple(int(side) for side in config.finetune.roi_size)
    patch = config.data.preprocessing.get("patch_size")
    if patch:
        return tuple(int(side) for side in patch)
    if not modality.serves_parts:
        return None
    size = config.data.preprocessing.get("slice_size")
    if size is None:
        raise ConfigError(
            "data.preprocessing.slice_size: a 2-D segmenter is scored on volumes in windows of "
            "the slice size; set it, e.g. [128, 128], or set finetune.roi_size=[X, Y, Z]"
        )
    return (*size, SLICES_PER_WINDOW)

