"""The TS2Vec encoder: architecture and shapes, NaN padding and missing values, timestamp
masking, the factory round trip, causal sliding encoding (equal to a per-step loop, no
future leakage, exactly `window` steps of past), and the optional trend head (equal to
CoST's separate causal convolutions, values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medssl.platform.encoders import build_encoder, encoder_from_architecture
from medssl.platform.encoders.factory import architecture_of
from medssl.platform.encoders.ts2vec import (
    TS2VecEncoder,
    causal_convolution,
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


TREND = [1, 2, 4, 8, 16, 32]


@pytest.mark.parametrize("taps", [1, 5, 16, 17, 40, 64])
def test_causal_convolution_matches_the_padded_direct_convolution(taps: int) -> None:
    x, weight = _series(3, 4, 50), _series(5, 4, taps, seed=1)
    expected = F.conv1d(F.pad(x, (taps - 1, 0)), weight)
    torch.testing.assert_close(causal_convolution(x, weight), expected, atol=1e-5, rtol=1e-5)
    # causal: the first steps see only zeros before the start
    torch.testing.assert_close(
        causal_convolution(x[..., :7], weight), expected[..., :7], atol=1e-5, rtol=1e-5
    )


def _trend_reference(enc: TS2VecEncoder, x: torch.Tensor) -> torch.Tensor:
    """CoST's form: one Conv1d per kernel with padding k - 1, cropped to be causal, averaged."""
    assert enc.trend is not None
    h = x.transpose(1, 2)
    h = enc.input_fc(h).transpose(1, 2)
    inside = series_steps(x)[:, None, :].float()
    for block in enc.blocks:
        h = block(h, inside)
    outs = []
    for conv in enc.trend.convs:
        k = conv.kernel_size[0]
        out = F.conv1d(h, conv.weight, conv.bias, padding=k - 1)
        outs.append(out[..., : h.shape[-1]])
    return torch.stack(outs).mean(dim=0)


def test_trend_head_equals_separate_causal_convolutions_values_and_gradients() -> None:
    enc = _encoder(trend_kernels=TREND)
    x = _series(2, 2, 45)
    got = enc(x, dense=True).dense
    expected = _trend_reference(enc, x)
    assert got is not None and got.shape == (2, 12, 45)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(expected)
    grads = torch.autograd.grad((got * weights).sum(), list(enc.parameters()))
    expected_grads = torch.autograd.grad((expected * weights).sum(), list(enc.parameters()))
    for a, b in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert all(g.abs().sum() > 0 for g in grads)  # every kernel's parameters learn


def test_trend_head_is_causal_keeps_padding_and_round_trips() -> None:
    enc = _encoder(trend_kernels=TREND)
    assert "trend." in enc.encoder_prefixes and len(enc.trend.convs) == len(TREND)  # type: ignore[union-attr]
    # padded rows equal their unpadded selves and stay zero on the padding
    row = _series(1, 2, 20, seed=3)
    padded = torch.cat([row, torch.full((1, 2, 9), NAN)], dim=-1)
    out, alone = enc(padded, dense=True).dense, enc(row, dense=True).dense
    assert out is not None and alone is not None
    torch.testing.assert_close(out[..., :20], alone, atol=1e-5, rtol=1e-5)
    assert (out[..., 20:] == 0).all()
    # the head itself looks only backwards, and sees the last max(kernels) steps
    head, h = enc.trend, _series(1, 12, 60, seed=4)
    assert head is not None and _encoder().trend is None
    ones = torch.ones(1, 1, 60)
    later, oldest = h.clone(), h.clone()
    later[..., 41:] += 3.0
    oldest[..., 40 - 31] += 3.0
    base = head(h, ones)
    torch.testing.assert_close(head(later, ones)[..., :41], base[..., :41], atol=1e-5, rtol=0)
    assert not torch.allclose(head(later, ones)[..., 41], base[..., 41])
    assert not torch.allclose(head(oldest, ones)[..., 40], base[..., 40])
    too_old = h.clone()
    too_old[..., 40 - 32] += 3.0
    torch.testing.assert_close(head(too_old, ones)[..., 40], base[..., 40], atol=1e-5, rtol=0)
    again = encoder_from_architecture(architecture_of(enc))
    assert isinstance(again, TS2VecEncoder) and again.init_kwargs["trend_kernels"] == TREND
    again.load_state_dict(enc.state_dict())
    x = _series(2, 2, 30)
    torch.testing.assert_close(again.eval()(x).global_features, enc(x).global_features)
    for bad in ([], [0, 2], [2.5], "128", [True]):
        with pytest.raises(ValueError, match="trend_kernels"):
            TS2VecEncoder(spatial_dims=1, in_channels=1, trend_kernels=bad)  # type: ignore[arg-type]
