"""Participant-level contrast: pair layout vs segment fallback, the EMA target, the loss it
reports against the loss function on the same embeddings."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder, EncoderOutput
from medssl.platform.losses.koleo import koleo_loss
from medssl.platform.losses.participant import participant_info_nce
from medssl.platform.methods.participant import ParticipantContrast, pair_partners


class Tiny(Encoder):
    name = "tiny"

    def __init__(self) -> None:
        super().__init__(spatial_dims=1, in_channels=1)
        self.conv = nn.Conv1d(1, 8, 5)
        self.feature_dim = 8

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        return EncoderOutput(self.conv(x).mean(dim=2))


def batch(subjects: list[int]) -> Batch:
    n = len(subjects)
    return Batch(
        x=torch.randn(n, 1, 64, generator=torch.Generator().manual_seed(n)),
        index=torch.arange(n),
        subject=torch.tensor(subjects),
        fs=torch.full((n,), 32.0),
    )


def method(**config: object) -> ParticipantContrast:
    torch.manual_seed(0)
    return ParticipantContrast(Tiny(), {"hidden_dim": 16, "projection_dim": 8, **config})


def test_pair_layout_is_recognised() -> None:
    assert pair_partners(torch.tensor([3, 3, 1, 1]), torch.arange(4))
    assert not pair_partners(torch.tensor([3, 1, 3, 1]), torch.arange(4))
    assert not pair_partners(torch.tensor([3, 3, 1]), torch.arange(3))
    assert not pair_partners(torch.tensor([3, 3]), torch.tensor([5, 5]))  # one item twice


def test_reported_loss_is_infonce_plus_weighted_koleo() -> None:
    m = method(augment="none")
    b = batch([0, 0, 1, 1, 2, 2])
    out = m(b)
    with torch.no_grad():
        q = m.projector(m.encoder.global_features(b["x"]))
        k = m.target_projector(m.target_encoder.global_features(b["x"]))
    partner = torch.arange(6) ^ 1
    nce = participant_info_nce(q, k, partner, b["subject"], b["subject"], 0.04)
    assert float(out["infonce"]) == pytest.approx(float(nce), rel=1e-5)
    # KoLeo within each side of the pairs (rows 0, 2, 4 and rows 1, 3, 5).
    koleo = (koleo_loss(q[0::2]) + koleo_loss(q[1::2])) / 2
    assert float(out["koleo"]) == pytest.approx(float(koleo), rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(float(nce + 0.1 * koleo), rel=1e-5)


def test_segment_positives_have_negatives_within_one_participant() -> None:
    """With positives: segment, other segments of the same participant are negatives, so a
    batch of one participant still has a loss to learn from."""
    m = method(augment="ecg", positives="segment")
    out = m(batch([7, 7, 7, 7]))
    assert float(out["infonce"]) > 0.1
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())


def test_fallback_to_segments_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    m = method(augment="none")
    with caplog.at_level(logging.WARNING, logger="medssl"):
        m(batch([0, 1, 2, 3]))
        m(batch([4, 5, 6, 7]))
    warnings = [r for r in caplog.records if "segment-level positives" in r.getMessage()]
    assert len(warnings) == 1
    # Without augmentation the two views of a segment are equal: with identical online and
    # target networks every positive has cosine 1.
    out = m(batch([0, 1, 2, 3]))
    assert float(out["positive_similarity"]) == pytest.approx(1.0, abs=1e-5)


def test_ema_target_follows_the_online_network() -> None:
    m = method(momentum=0.9)
    before = [p.clone() for p in m.target_encoder.parameters()]
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    m.after_optimizer_step(1, 10)
    for old, new, online in zip(
        before, m.target_encoder.parameters(), m.encoder.parameters(), strict=True
    ):
        assert torch.allclose(new, 0.9 * old + 0.1 * online)


def test_gradients_reach_the_online_encoder_only() -> None:
    m = method(augment="ecg")
    m(batch([0, 0, 1, 1])).__getitem__("loss").backward()
    assert all(p.grad is not None for p in m.encoder.parameters())
    assert all(p.grad is None for p in m.target_encoder.parameters())


def test_config_errors_name_the_key() -> None:
    with pytest.raises(Exception, match="augment"):
        method(augment="eeg")
    with pytest.raises(Exception, match="pretrain.method.leads"):
        method(augment={"limb_leads": 0.5})
    with pytest.raises(ValueError, match="spatial_dims"):
        enc = Tiny()
        enc.spatial_dims = 2
        ParticipantContrast(enc)
