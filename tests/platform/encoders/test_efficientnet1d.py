"""The 1-D EfficientNet encoder: shapes for many lengths and channel counts, the ~3.3M parameter
budget, one MBConv block against a hand-written float64 reference, the dense map against a
loop interpolation, the model-card round trip, gradients, determinism and input errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medssl.platform.encoders import build_encoder, encoder_from_architecture
from medssl.platform.encoders.efficientnet1d import EfficientNet1DEncoder, _MBConv
from medssl.platform.encoders.factory import architecture_of
from medssl.platform.errors import ConfigError
from medssl.platform.registry import ENCODERS

SMALL = {"feature_dim": 24, "width": 0.25, "depth": 0.34}


def _encoder(channels: int = 1, **options: object) -> EfficientNet1DEncoder:
    torch.manual_seed(0)
    settings = {**SMALL, **options}
    return EfficientNet1DEncoder(spatial_dims=1, in_channels=channels, **settings).eval()  # type: ignore[arg-type]


def _series(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _randomise_norms(module: torch.nn.Module) -> None:
    """Give batch norms non-trivial running statistics so eval mode is not an identity."""
    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_registered_and_default_size_is_about_3_3m_parameters() -> None:
    assert ENCODERS.get("efficientnet1d") is EfficientNet1DEncoder
    enc = EfficientNet1DEncoder(spatial_dims=1, in_channels=1)
    count = sum(p.numel() for p in enc.parameters())
    assert 2_500_000 <= count <= 4_000_000, count
    assert enc.feature_dim == enc.dense_dim == 256
    assert len(enc.blocks) == 16
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv1d)]
    strides = [c.stride[0] for c in convs]
    assert math.prod(strides) == 32


@pytest.mark.parametrize(("channels", "length"), [(1, 16), (1, 17), (4, 33), (12, 301), (2, 640)])
def test_output_shapes_for_any_length_and_channels(channels: int, length: int) -> None:
    enc = _encoder(channels)
    x = _series(3, channels, length)
    out = enc(x, dense=True)
    assert out.global_features.shape == (3, 24)
    assert out.dense is not None and out.dense.shape == (3, 24, length)
    assert enc(x).dense is None
    # The embedding is the time mean of the head map.
    torch.testing.assert_close(out.global_features, enc.feature_map(x).mean(dim=-1))


def test_dense_map_is_the_head_map_linearly_interpolated() -> None:
    enc = _encoder()
    x = _series(2, 1, 45)
    head = enc.feature_map(x).double()
    dense = enc(x, dense=True).dense.double()
    short, length = head.shape[-1], x.shape[-1]
    expected = torch.empty_like(dense)
    for t in range(length):
        # Half-pixel centres (align_corners=False), clamped at both ends.
        src = min(max((t + 0.5) * short / length - 0.5, 0.0), short - 1)
        lo = int(math.floor(src))
        hi = min(lo + 1, short - 1)
        frac = src - lo
        expected[..., t] = (1 - frac) * head[..., lo] + frac * head[..., hi]
    torch.testing.assert_close(dense, expected, rtol=1e-5, atol=1e-5)


def test_mbconv_block_matches_a_float64_reference() -> None:
    torch.manual_seed(0)
    block = _MBConv(8, 12, expansion=6, kernel=5, stride=2, drop=0.0).double().eval()
    _randomise_norms(block)
    x = _series(2, 8, 23).double()
    expand, bn1, _, dw, bn2, _, se, project, bn3 = block.body

    def norm(h: torch.Tensor, bn: torch.nn.BatchNorm1d) -> torch.Tensor:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return (h - bn.running_mean[:, None]) * scale[:, None] + bn.bias[:, None]

    h = F.silu(norm(F.conv1d(x, expand.weight), bn1))
    h = F.silu(norm(F.conv1d(h, dw.weight, stride=2, padding=2, groups=48), bn2))
    squeezed = F.silu(se.reduce.weight[..., 0] @ h.mean(dim=-1).T + se.reduce.bias[:, None])
    gate = torch.sigmoid(se.expand.weight[..., 0] @ squeezed + se.expand.bias[:, None])
    h = h * gate.T[:, :, None]
    expected = norm(F.conv1d(h, project.weight), bn3)
    assert se.reduce.out_channels == 2 and not block.residual
    torch.testing.assert_close(block(x), expected)


def test_residual_block_adds_its_input() -> None:
    torch.manual_seed(0)
    block = _MBConv(16, 16, expansion=6, kernel=3, stride=1, drop=0.0).eval()
    x = _series(2, 16, 20)
    torch.testing.assert_close(block(x), x + block.body(x))


def test_card_round_trip_rebuilds_the_same_network() -> None:
    enc = build_encoder("efficientnet1d", spatial_dims=1, in_channels=4, dropout=0.1, **SMALL)
    _randomise_norms(enc)
    card = architecture_of(enc)
    assert card["kwargs"] == {**SMALL, "dropout": 0.1, "stochastic_depth": 0.0}
    rebuilt = encoder_from_architecture(card)
    rebuilt.load_state_dict(enc.state_dict())
    x = _series(2, 4, 100)
    torch.testing.assert_close(rebuilt.eval()(x).global_features, enc.eval()(x).global_features)


def test_gradient_reaches_every_parameter_and_the_input() -> None:
    enc = _encoder(2, stochastic_depth=0.0).train()
    x = _series(4, 2, 64).requires_grad_(True)
    out = enc(x, dense=True)
    (out.global_features.square().sum() + out.dense.mean()).backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_eval_mode_is_deterministic_and_per_sample() -> None:
    enc = _encoder(dropout=0.5, stochastic_depth=0.5)
    _randomise_norms(enc)
    x = _series(3, 1, 80)
    first, second = enc(x).global_features, enc(x).global_features
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(enc(x[1:2]).global_features, first[1:2])


def test_training_regularisers_act_only_in_training() -> None:
    enc = _encoder(dropout=0.5, stochastic_depth=0.4)
    rates = [block.drop for block in enc.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.4)
    assert all(b > a for a, b in zip(rates, rates[1:], strict=False))
    plain = _encoder()
    plain.load_state_dict(enc.state_dict())
    x = _series(4, 1, 64)
    torch.testing.assert_close(enc(x).global_features, plain(x).global_features)
    enc.train()
    torch.manual_seed(1)
    a = enc(x).global_features
    b = enc(x).global_features
    assert not torch.equal(a, b)


def test_width_and_depth_scale_the_network() -> None:
    wide = EfficientNet1DEncoder(spatial_dims=1, in_channels=1, width=1.5, depth=2.0)
    assert wide.stem[0].out_channels == 48 and len(wide.blocks) == 32
    widths = sorted({block.body[-1].num_features for block in wide.blocks})
    # 1.5 x (16, 24, 40, 80, 112, 184, 320), each rounded to the nearest multiple of 8.
    assert widths == [24, 40, 64, 120, 168, 280, 480]
    shallow = EfficientNet1DEncoder(spatial_dims=1, in_channels=1, depth=0.5)
    assert len(shallow.blocks) == 1 + 1 + 1 + 2 + 2 + 2 + 1


def test_nan_input_is_refused_with_the_reason() -> None:
    x = _series(2, 1, 40)
    x[1, 0, 7] = float("nan")
    with pytest.raises(ValueError, match="contains NaN; the biosignal adapter masks/drops NaN"):
        _encoder()(x)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"spatial_dims": 2}, "spatial_dims must be 1, got 2"),
        ({"feature_dim": 0}, r"encoder.kwargs.feature_dim: .*greater than or equal to 1, got 0"),
        ({"width": -1.0}, r"encoder.kwargs.width: .*greater than 0, got -1.0"),
        ({"depth": float("nan")}, r"encoder.kwargs.depth: .*finite number, got nan"),
        ({"dropout": 1.0}, r"encoder.kwargs.dropout: .*less than 1, got 1.0"),
        ({"stochastic_depth": -0.1}, r"encoder.kwargs.stochastic_depth: .*got -0.1"),
    ],
)
def test_bad_arguments_name_the_value(options: dict, match: str) -> None:
    settings = {"spatial_dims": 1, "in_channels": 1, **options}
    with pytest.raises(ValueError, match=match):
        EfficientNet1DEncoder(**settings)


def test_bad_input_shapes_are_refused() -> None:
    enc = _encoder(2)
    with pytest.raises(ValueError, match=r"expects input \(B, 2, \*\) got \(2, 1, 40\)"):
        enc(_series(2, 1, 40))
    with pytest.raises(ValueError, match="at least 16 steps, got 15"):
        enc(_series(2, 2, 15))
    with pytest.raises(ConfigError, match="encoder.kwargs.kernel: encoder 'efficientnet1d' has no"):
        build_encoder("efficientnet1d", spatial_dims=1, in_channels=1, kernel=3)
