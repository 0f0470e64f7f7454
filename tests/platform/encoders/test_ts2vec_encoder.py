"""The TS2Vec encoder: architecture and shapes, NaN padding and missing values, timestamp
masking, the factory round trip, and causal sliding encoding (equal to a per-step loop, no
future leakage, exactly `window` steps of past)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medssl.platform.encoders import build_encoder, encoder_from_architecture
from medssl.platform.encoders.factory import architecture_of
from medssl.platform.encoders.ts2vec import (
    TS2VecEncoder,
    causal_sliding_representations,
    masked_max_pool,
    series_steps,
)

NAN = float("nan")


def _encoder(channels: int = 2, **options: object) -> TS2VecEncoder:
    torch.manual_seed(0)
    settings = {"hidden_dim": 8, "output_dim": 12, "depth": 3, **options}
    return TS2VecEncoder(spatial_dims=1, in_channels=channels, **settings).eval()  # type: ignore[arg-type]


def _series(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_architecture_follows_ts2vec() -> None:
    enc = TS2VecEncoder(spatial_dims=1, in_channels=3)
    assert enc.feature_dim == enc.dense_dim == 320 and enc.input_fc.in_features == 3
    assert enc.input_fc.out_features == 64
    dilations = [block.conv1.dilation[0] for block in enc.blocks]
    assert dilations == [2**i for i in range(11)]
    assert all(block.conv1.kernel_size == (3,) for block in enc.blocks)
    assert [block.projector is not None for block in enc.blocks] == [False] * 10 + [True]
    assert enc.blocks[-1].conv2.out_channels == 320


def test_shapes_and_global_features_are_the_max_over_steps() -> None:
    enc = _encoder()
    x = _series(4, 2, 37)
    out = enc(x, dense=True)
    assert out.dense is not None and out.dense.shape == (4, 12, 37)
    assert out.global_features.shape == (4, 12)
    torch.testing.assert_close(out.global_features, out.dense.amax(dim=2))
    assert enc(x).dense is None


def test_nan_padded_series_match_their_unpadded_selves() -> None:
    enc = _encoder()
    lengths = [30, 17, 5]
    rows = [_series(1, 2, n, seed=n) for n in lengths]
    padded = torch.full((3, 2, 30), NAN)
    for i, (row, n) in enumerate(zip(rows, lengths, strict=True)):
        padded[i, :, :n] = row[0]
    out = enc(padded, dense=True)
    assert out.dense is not None and torch.isfinite(out.dense).all()
    for i, (row, n) in enumerate(zip(rows, lengths, strict=True)):
        alone = enc(row, dense=True)
        assert alone.dense is not None
        torch.testing.assert_close(out.dense[i, :, :n], alone.dense[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.global_features[i], alone.global_features[0])
        assert (out.dense[i, :, n:] == 0).all()


def test_series_steps_and_masked_pooling() -> None:
    x = _series(3, 2, 6)
    x[0, :, 4:] = NAN
    x[1, 0, 2] = NAN  # a missing value, not padding
    x[2] = NAN  # an empty row
    steps = series_steps(x)
    assert steps.tolist() == [[True] * 4 + [False] * 2, [True] * 6, [False] * 6]
    seq = _series(3, 5, 6, seed=1)
    pooled = masked_max_pool(seq, steps)
    torch.testing.assert_close(pooled[0], seq[0, :, :4].amax(dim=1))
    assert (pooled[2] == 0).all()


def test_a_missing_channel_drops_the_whole_step_and_stays_finite() -> None:
    enc = _encoder()
    x = _series(2, 2, 25)
    one = x.clone()
    one[:, 0, 10] = NAN
    both = x.clone()
    both[:, :, 10] = NAN
    a, b = enc(one, dense=True).dense, enc(both, dense=True).dense
    assert a is not None and b is not None and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, enc(x, dense=True).dense)  # type: ignore[arg-type]
    leaf = one.clone().requires_grad_(True)
    enc.train()(leaf).global_features.sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


def test_timestamp_masking_only_in_training() -> None:
    enc = _encoder(dropout=0.0)
    x = _series(2, 2, 20)
    eval_out = enc(x, dense=True).dense
    torch.testing.assert_close(eval_out, enc(x, dense=True).dense)
    enc.train()
    torch.manual_seed(1)
    first = enc(x, dense=True).dense
    torch.manual_seed(2)
    assert not torch.allclose(first, enc(x, dense=True).dense)  # type: ignore[arg-type]
    unmasked = _encoder(dropout=0.0, mask_probability=0.0).train()
    torch.testing.assert_close(unmasked(x, dense=True).dense, eval_out)


def test_factory_round_trip_and_bad_arguments() -> None:
    enc = build_encoder("ts2vec", spatial_dims=1, in_channels=3, output_dim=16, depth=2)
    again = encoder_from_architecture(architecture_of(enc))
    assert isinstance(again, TS2VecEncoder) and again.init_kwargs == enc.init_kwargs
    again.load_state_dict(enc.state_dict())
    with pytest.raises(ValueError, match="spatial_dims must be 1"):
        TS2VecEncoder(spatial_dims=2, in_channels=1)
    with pytest.raises(ValueError, match="kernel_size"):
        TS2VecEncoder(spatial_dims=1, in_channels=1, kernel_size=4)
    with pytest.raises(ValueError, match="expects input"):
        enc(torch.randn(2, 1, 10))


def _window_loop(enc: TS2VecEncoder, x: torch.Tensor, window: int) -> torch.Tensor:
    """Reference: encode x[t - window .. t] (NaN on the left before the start) for each t."""
    reps = []
    for t in range(x.shape[-1]):
        piece = x[..., max(0, t - window) : t + 1]
        piece = F.pad(piece, (window + 1 - piece.shape[-1], 0), value=NAN)
        dense = enc(piece, dense=True).dense
        assert dense is not None
        reps.append(dense[..., -1])
    return torch.stack(reps, dim=1)


def test_causal_sliding_matches_a_per_step_loop_and_restores_the_mode() -> None:
    enc = _encoder().train()
    x = _series(2, 2, 24)
    got = causal_sliding_representations(enc, x, window=6, batch_size=7)
    assert enc.training
    with torch.no_grad():
        expected = _window_loop(enc.eval(), x, 6)
    assert got.shape == (2, 24, 12)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        causal_sliding_representations(enc, x, window=6, batch_size=500), got
    )


def test_causal_sliding_sees_no_future_and_exactly_window_steps_of_past() -> None:
    enc = _encoder()
    x = _series(1, 2, 40)
    window, t0 = 8, 20
    base = causal_sliding_representations(enc, x, window=window)
    future = x.clone()
    future[..., t0 + 1 :] += 5.0
    changed = causal_sliding_representations(enc, future, window=window)
    torch.testing.assert_close(changed[:, : t0 + 1], base[:, : t0 + 1], atol=0, rtol=0)
    assert not torch.allclose(changed[:, t0 + 1], base[:, t0 + 1])
    # The encoder itself is not causal: encoding the whole series would leak the future.
    whole, whole_changed = enc(x, dense=True).dense, enc(future, dense=True).dense
    assert not torch.allclose(whole[..., t0], whole_changed[..., t0])  # type: ignore[index]
    too_old, oldest = x.clone(), x.clone()
    too_old[..., t0 - window - 1] += 5.0
    oldest[..., t0 - window] += 5.0
    rep_too_old = causal_sliding_representations(enc, too_old, window=window)[:, t0]
    rep_oldest = causal_sliding_representations(enc, oldest, window=window)[:, t0]
    torch.testing.assert_close(rep_too_old, base[:, t0], atol=0, rtol=0)
    assert not torch.allclose(rep_oldest, base[:, t0])
