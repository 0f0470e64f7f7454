"""The segmentation task: it learns a synthetic cube, and sliding-window evaluation agrees
with a whole-volume forward pass for a fully-convolutional model."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import medssl.pipelines.tasks  # noqa: F401  (registers the tasks)
from medssl.pipelines.tasks.segmentation import (
    SegmentationTask,
    check_run_roi,
    evaluate_segmentation,
    foreground_dice,
)
from medssl.platform.batch import collate_items
from medssl.platform.errors import ConfigError
from medssl.platform.evaluation.metrics import dice_per_label, hd95_per_label
from medssl.platform.registry import TASKS

sys.path.insert(0, str(Path(__file__).parent))
from tiny_encoders import PointwiseNet, TinyUNet, cube_volume  # noqa: E402


def items(n: int, side: int, seed: int, spacing=(1.0, 1.0, 1.0)) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x, mask = cube_volume(gen, side)
        out.append({"x": x, "mask": mask, "spacing": torch.tensor(spacing)})
    return out


def test_registered():
    assert TASKS.get("segmentation") is SegmentationTask
    task = TASKS.get("segmentation")()
    assert task.target_key == "mask" and task.purpose == "segmentation"


def test_learns_a_bright_cube():
    torch.manual_seed(0)
    task = SegmentationTask()
    model = task.build_model(TinyUNet(), num_classes=2)
    train = DataLoader(
        [{k: v for k, v in it.items() if k != "spacing"} for it in items(64, 16, seed=1)],
        batch_size=4,
        shuffle=True,
        collate_fn=collate_items,
        generator=torch.Generator().manual_seed(0),
    )
    module = task.module(model, lr=1e-2, optimizer="adam", total_steps=40)
    L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=40,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(module, train)
    held_out = items(4, 24, seed=2, spacing=(1.5, 1.5, 3.0))  # larger than the 16^3 window
    result = evaluate_segmentation(model, held_out, (16, 16, 16), 2)
    assert result["mean_dice"] > 0.8, result
    assert result["n_volumes"] == 4 and math.isfinite(result["mean_hd95"])
    flat = task.evaluate(model, held_out, roi_size=(16, 16, 16))
    assert flat["mean_dice"] == pytest.approx(result["mean_dice"])
    assert flat["dice/1"] == pytest.approx(result["dice"][1])


def test_sliding_window_equals_whole_volume_forward():
    model = SegmentationTask().build_model(PointwiseNet(), num_classes=2)
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(2).view(2, 2, 1, 1, 1))
        model.head.bias.zero_()
    gen = torch.Generator().manual_seed(3)
    volumes = []
    for _ in range(3):
        x, mask = cube_volume(gen, side=20, noise=0.45)
        x = torch.nn.functional.pad(x, (0, 3, 0, 1, 0, 0))  # 20 x 21 x 23: no multiple of 8
        mask = torch.nn.functional.pad(mask, (0, 3, 0, 1, 0, 0))
        volumes.append({"x": x, "mask": mask, "spacing": torch.tensor([0.8, 1.0, 2.0])})
    result = evaluate_segmentation(model, volumes, (8, 8, 8), 2)
    whole_dice, whole_hd = [], []
    for v in volumes:
        with torch.no_grad():
            pred = model(v["x"][None]).argmax(1)[0]
        whole_dice.append(dice_per_label(pred, v["mask"][0], 2)[0])
        whole_hd.append(hd95_per_label(pred, v["mask"][0], 2, spacing=(0.8, 1.0, 2.0))[0])
    assert 0.3 < np.mean(whole_dice) < 0.99  # a non-trivial segmentation is being compared
    assert [r["dice"][0] for r in result["per_volume"]] == pytest.approx(whole_dice, abs=1e-7)
    assert [r["hd95"][0] for r in result["per_volume"]] == pytest.approx(whole_hd, abs=1e-6)
    assert result["mean_dice"] == pytest.approx(np.mean(whole_dice))


def test_batches_items_spacing_and_errors():
    model = SegmentationTask().build_model(PointwiseNet(), num_classes=2)
    volumes = items(4, 12, seed=4)
    batch = collate_items(volumes)
    from_items = evaluate_segmentation(model, volumes, (8, 8, 8), 2)
    from_batch = evaluate_segmentation(model, [batch], (8, 8, 8), 2)
    assert from_batch["per_volume"] == from_items["per_volume"]
    coarse = [{**v, "spacing": torch.tensor([2.0, 2.0, 2.0])} for v in volumes]
    doubled = evaluate_segmentation(model, coarse, (8, 8, 8), 2)
    assert doubled["mean_hd95"] == pytest.approx(2 * from_items["mean_hd95"], rel=1e-5)
    voxels = evaluate_segmentation(
        model, [{"x": v["x"], "mask": v["mask"]} for v in volumes], (8, 8, 8), 2, spacing_key=None
    )
    assert voxels["mean_hd95"] == pytest.approx(from_items["mean_hd95"], rel=1e-6)
    with pytest.raises(KeyError, match="spacing"):
        evaluate_segmentation(
            model, [{"x": volumes[0]["x"], "mask": volumes[0]["mask"]}], (8, 8, 8), 2
        )
    with pytest.raises(ValueError, match="roi_size"):
        evaluate_segmentation(model, volumes, (8, 8, 8, 8), 2)
    assert model.training  # the caller's mode is restored


def test_evaluate_through_a_run_context():
    model = SegmentationTask().build_model(PointwiseNet(), num_classes=2)
    volumes = items(3, 12, seed=5)
    asked = []

    def dataset(indices, purpose):
        asked.append((indices, purpose))
        # as the volume adapter serves them: numpy arrays, float32 spacing
        return [{k: v.numpy() for k, v in volumes[i].items()} for i in indices]

    ctx = SimpleNamespace(
        dataset=dataset,
        config=SimpleNamespace(finetune=SimpleNamespace(roi_size=[8, 8, 8])),
        modality=None,  # the set roi_size is the window
    )
    out = SegmentationTask().evaluate(model, ctx, [0, 2])
    assert asked == [([0, 2], "evaluate")]
    direct = evaluate_segmentation(model, [volumes[0], volumes[2]], (8, 8, 8), 2)
    assert out["mean_dice"] == pytest.approx(direct["mean_dice"])
    assert set(out) == {"mean_dice", "mean_hd95", "dice/1", "hd95/1"}


def test_loss_and_validation_dice():
    task = SegmentationTask()
    gen = torch.Generator().manual_seed(6)
    x, mask = cube_volume(gen, 8)
    perfect = torch.cat([(mask == 0).float(), (mask == 1).float()])[None] * 20.0
    wrong = perfect.flip(1)
    loss = task.loss()
    assert float(loss(perfect, mask[None])) < 0.01 < float(loss(wrong, mask[None]))
    assert foreground_dice(perfect, mask[None]) == pytest.approx(1.0)
    assert foreground_dice(wrong, mask[None]) == pytest.approx(0.0)


def test_run_roi_that_the_encoder_cannot_take_names_finetune_roi_size() -> None:
    net = TinyUNet(spatial_dims=3)
    net.input_multiple = 16  # as the MONAI UNet: four 2x poolings
    check_run_roi([32, 32, 16], net)
    with pytest.raises(ConfigError, match=r"finetune.roi_size: roi_size must be 2 or 3"):
        check_run_roi([32, 32, 16, 8], net)
    with pytest.raises(ConfigError, match=r"finetune.roi_size: the window \[40, 32, 16\].*e.g. \[48, 32, 16\]"):
        check_run_roi([40, 32, 16], net)
    with pytest.raises(ConfigError, match=r"finetune.roi_size: the window \[32, 32\] does not fit"):
        check_run_roi([32, 32], net)
    check_run_roi([32, 32, 5], TinyUNet(spatial_dims=2))  # a 2-D model sees 32 x 32 slices
    slices = TinyUNet(spatial_dims=2)
    slices.input_multiple = 16
    with pytest.raises(ConfigError, match=r"e.g. \[48, 32, 5\]"):  # the depth stays
        check_run_roi([40, 32, 5], slices)
