"""Frozen-feature extraction: the encoder's own global vectors, in eval mode, without grad."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder, EncoderOutput
from medssl.platform.evaluation.features import extract_features


class RecordingEncoder(Encoder):
    """Global vector = per-channel mean and max; remembers its mode and grad state."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__(spatial_dims=2, in_channels=1)
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.feature_dim = 2
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        self.seen.append((self.training, torch.is_grad_enabled()))
        flat = x.flatten(1) * self.scale
        return EncoderOutput(torch.stack([flat.mean(1), flat.amax(1)], dim=1))


def batches(n_batches: int, with_subject: bool = True) -> list[Batch]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for b in range(n_batches):
        fields = {"x": torch.randn(3, 1, 4, 4, generator=gen), "label": torch.tensor([0, 1, b])}
        if with_subject:
            fields["subject"] = torch.arange(3) + 10 * b
        out.append(Batch(fields))
    return out


def test_features_labels_subjects_and_mode():
    encoder = RecordingEncoder().train()
    data = batches(3)
    feats, labels, subjects = extract_features(encoder, data)
    want = np.concatenate([encoder.global_features(b["x"]).detach().numpy() for b in data])
    np.testing.assert_allclose(feats, want, rtol=1e-6)
    assert feats.dtype == np.float32 and feats.shape == (9, 2)
    assert labels.tolist() == [0, 1, 0, 0, 1, 1, 0, 1, 2]
    assert subjects.tolist() == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert encoder.seen[:3] == [(False, False)] * 3  # eval mode, no grad while extracting
    assert encoder.training  # mode restored


def test_missing_fields_give_none_and_empty_loader_fails():
    plain = [{"x": torch.randn(2, 1, 4, 4)}]
    feats, labels, subjects = extract_features(RecordingEncoder(), plain)
    assert feats.shape == (2, 2) and labels is None and subjects is None
    _, labels, subjects = extract_features(RecordingEncoder(), batches(2, with_subject=False))
    assert labels is not None and subjects is None
    with pytest.raises(ValueError, match="no batches"):
        extract_features(RecordingEncoder(), [])
