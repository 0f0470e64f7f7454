"""Initialising a downstream model from a pretrained encoder copies the encoder half only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from medssl.pipelines.tasks.classification import ClassificationTask
from medssl.pipelines.tasks.pretrained import load_encoder_weights
from medssl.pipelines.tasks.segmentation import SegmentationTask
from medssl.platform.encoders.base import SegmentationNet
from medssl.platform.errors import CheckpointError

sys.path.insert(0, str(Path(__file__).parent))
from tiny_encoders import PoolingEncoder, TinyUNet  # noqa: E402


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def is_encoder_half(key: str) -> bool:
    return key.startswith(("stem.", "down."))


@pytest.mark.parametrize("wrapped", [False, True])
def test_segmenter_gets_encoder_weights_only(wrapped):
    torch.manual_seed(1)
    pretrained = SegmentationNet(TinyUNet(), 3)  # its decoder and head must NOT be copied
    source = snapshot(pretrained) if wrapped else snapshot(pretrained.encoder)
    torch.manual_seed(2)
    fresh = TinyUNet()
    before = snapshot(fresh)
    model = SegmentationTask().build_model(fresh, 3, pretrained_state=source)
    head_before = None if not wrapped else pretrained.head.weight
    after = snapshot(model.encoder)
    want = snapshot(pretrained.encoder)
    n_encoder = sum(is_encoder_half(k) for k in after)
    assert n_encoder == 4 and len(after) == 8
    for key, value in after.items():
        if is_encoder_half(key):
            assert torch.equal(value, want[key]), key
        else:
            assert torch.equal(value, before[key]), key
            assert not torch.equal(value, want[key]), key
    if head_before is not None:
        assert not torch.equal(model.head.weight, head_before)
    report = model.init_report
    assert len(report.loaded) == 4 and report.missing == []
    assert report.unused == len(source) - 4


def test_missing_encoder_tensors_are_reported():
    torch.manual_seed(3)
    source = {k: v for k, v in TinyUNet().state_dict().items() if k != "down.0.bias"}
    model = SegmentationTask().build_model(TinyUNet(), 2, pretrained_state=source)
    assert model.init_report.missing == ["down.0.bias"] and len(model.init_report.loaded) == 3
    assert SegmentationTask().build_model(TinyUNet(), 2).init_report is None


def test_incompatible_states_are_refused():
    wide = TinyUNet(width=4).state_dict()
    with pytest.raises(CheckpointError, match="shape"):
        SegmentationTask().build_model(TinyUNet(), 2, pretrained_state=wide)
    with pytest.raises(CheckpointError, match="none of the"):
        SegmentationTask().build_model(
            TinyUNet(), 2, pretrained_state={"other.weight": torch.ones(1)}
        )


def test_encoder_without_declared_halves():
    class Undeclared(TinyUNet):
        encoder_prefixes = ()

    with pytest.raises(ValueError, match="encoder_prefixes"):
        SegmentationTask().build_model(Undeclared(), 2, pretrained_state=TinyUNet().state_dict())


def test_classifier_copies_whole_encoder_and_keeps_head_fresh():
    torch.manual_seed(4)
    source_encoder = PoolingEncoder()
    source = {
        **{f"encoder.{k}": v for k, v in source_encoder.state_dict().items()},
        "projector.weight": torch.ones(3, 3),
    }
    torch.manual_seed(5)
    reference = ClassificationTask().build_model(PoolingEncoder(), 2)
    torch.manual_seed(5)
    model = ClassificationTask().build_model(PoolingEncoder(), 2, pretrained_state=source)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, source_encoder.state_dict()[key])
    assert torch.equal(model.head.weight, reference.head.weight)  # fresh, as without a state
    assert len(model.init_report.loaded) == 2 and model.init_report.unused == 1


def test_prefix_stops_at_module_boundary():
    class Numbered(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(1, 1) for _ in range(11))

    class Wrapper(TinyUNet):
        encoder_prefixes = ("extra.layers.1",)

        def __init__(self) -> None:
            super().__init__()
            self.extra = Numbered()

    target = Wrapper()
    source = {k: torch.full_like(v, 7.0) for k, v in Wrapper().state_dict().items()}
    report = load_encoder_weights(target, source, target.encoder_prefixes)
    assert sorted(report.loaded) == ["extra.layers.1.bias", "extra.layers.1.weight"]
