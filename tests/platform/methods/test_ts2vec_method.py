"""The TS2Vec method: overlapping crops (geometry, inside each series, the overlap is the same
data), the loss is the hierarchical loss on the overlap, one optimiser step, and the SWA
encoder used for evaluation."""

from __future__ import annotations

import pytest
import torch

from medssl.platform.batch import Batch
from medssl.platform.encoders.ts2vec import TS2VecEncoder
from medssl.platform.engine.pretrain import optimizer_groups
from medssl.platform.errors import ConfigError, DataError
from medssl.platform.losses.hierarchical import hierarchical_contrastive_loss
from medssl.platform.methods.ts2vec import TS2Vec
from medssl.platform.registry import METHODS


def _method(**config: object) -> TS2Vec:
    torch.manual_seed(0)
    encoder = TS2VecEncoder(spatial_dims=1, in_channels=2, hidden_dim=8, output_dim=12, depth=2)
    return TS2Vec(encoder, config)


def _padded_batch() -> torch.Tensor:
    x = torch.randn(5, 2, 60, generator=torch.Generator().manual_seed(0))
    x[1, :, 41:] = float("nan")
    x[3, :, 25:] = float("nan")
    return x


def _find(row: torch.Tensor, piece: torch.Tensor) -> int:
    """Where `piece` (C, L) starts inside `row` (C, T); -1 when it is no contiguous slice."""
    length = piece.shape[-1]
    for start in range(row.shape[-1] - length + 1):
        if torch.equal(row[:, start : start + length], piece):
            return start
    return -1


def test_registered_with_its_contract() -> None:
    assert METHODS.get("ts2vec") is TS2Vec
    assert TS2Vec.encoder_output == "sequence" and TS2Vec.requires == frozenset()


@pytest.mark.parametrize("unit", [0, 2])
def test_views_overlap_inside_each_series(unit: int) -> None:
    method = _method(temporal_unit=unit)
    x = _padded_batch()
    lengths = [60, 41, 60, 25, 60]
    overlaps = set()
    for seed in range(25):
        torch.manual_seed(seed)
        view1, view2, overlap = method.make_views(x)
        overlaps.add(overlap)
        assert 2 ** (unit + 1) <= overlap <= 25
        assert view1.shape[-1] >= overlap and view2.shape[-1] >= overlap
        assert view1.shape[-1] + view2.shape[-1] - overlap <= 25
        assert not torch.isnan(view1).any() and not torch.isnan(view2).any()
        torch.testing.assert_close(view1[..., -overlap:], view2[..., :overlap], atol=0, rtol=0)
        for b, length in enumerate(lengths):
            start1 = _find(x[b, :, :length], view1[b])
            start2 = _find(x[b, :, :length], view2[b])
            assert start1 >= 0 and start2 == start1 + view1.shape[-1] - overlap
    assert len(overlaps) > 3


def test_loss_is_the_hierarchical_loss_on_the_overlap() -> None:
    method = _method(alpha=0.3).eval()  # eval: no timestamp masking or dropout
    batch = Batch(x=_padded_batch())
    torch.manual_seed(7)
    out = method(batch)
    torch.manual_seed(7)
    view1, view2, overlap = method.make_views(batch["x"])
    z1 = method.encoder(view1, dense=True).dense[..., -overlap:].transpose(1, 2)
    z2 = method.encoder(view2, dense=True).dense[..., :overlap].transpose(1, 2)
    expected = hierarchical_contrastive_loss(z1, z2, alpha=0.3)
    torch.testing.assert_close(out["loss"], expected)
    assert float(out["overlap"]) == overlap
    assert 0 <= float(out["embedding_std"]) <= 1.5


def test_one_step_is_finite_and_the_swa_encoder_lags_the_live_one() -> None:
    method = _method()
    optimizer = torch.optim.AdamW(optimizer_groups(method), lr=1e-2)
    batch = Batch(x=_padded_batch())
    snapshots = []
    for step in range(3):
        optimizer.zero_grad()
        loss = method(batch)["loss"]
        assert torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in method.encoder.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        optimizer.step()
        method.after_optimizer_step(step + 1, 3)
        snapshots.append([p.detach().clone() for p in method.encoder.parameters()])
    averaged = method.inference_encoder()
    assert averaged is not method.encoder and isinstance(averaged, TS2VecEncoder)
    for p_avg, *history in zip(averaged.parameters(), *snapshots, strict=True):
        torch.testing.assert_close(p_avg, torch.stack(history).mean(dim=0))
    assert any(
        not torch.allclose(a, b)
        for a, b in zip(averaged.parameters(), method.encoder.parameters(), strict=True)
    )
    assert not any(p.requires_grad for p in averaged.parameters())
    assert _method(swa=False).inference_encoder() is not None


def test_errors_name_the_key_or_the_data() -> None:
    with pytest.raises(ConfigError, match="pretrain.method.alpha"):
        _method(alpha=2.0)
    with pytest.raises(ConfigError, match="pretrain.method.crops"):
        _method(crops=3)
    with pytest.raises(DataError, match="at least 8 steps"):
        _method(temporal_unit=2)(Batch(x=torch.randn(2, 2, 6)))
    from medssl.platform.encoders.resnet import ResNetEncoder

    image_encoder = ResNetEncoder(spatial_dims=2, in_channels=1, depth=10, widen_factor=0.25)
    with pytest.raises(ConfigError, match="series encoder"):
        TS2Vec(image_encoder)
