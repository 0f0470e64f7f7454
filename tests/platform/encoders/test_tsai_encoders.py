"""tsai backbones behind the Encoder interface: each builds from the registry and gives (B, D)
and a per-step (B, D, T) map; pooling over the series' own steps; NaN input left untouched;
TSTPlus padding; bad options; only tsai.models modules are imported."""

from __future__ import annotations

import sys

import pytest
import torch

from medssl.platform.encoders import build_encoder, encoder_from_architecture
from medssl.platform.encoders.factory import architecture_of
from medssl.platform.encoders.ts2vec import masked_max_pool, masked_mean_pool, series_steps
from medssl.platform.encoders.tsai import TsaiEncoder
from medssl.platform.errors import ConfigError

pytest.importorskip("tsai", reason="the tsai backbones need the timeseries extra")

TINY: dict[str, dict[str, object]] = {
    "inception_time_plus": {"nf": 4, "depth": 3},
    "resnet_plus": {"nf": 4},
    "xception_time_plus": {"nf": 4},
    "tst_plus": {"seq_len": 32, "d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 16},
}
DIMS = {"inception_time_plus": 16, "resnet_plus": 8, "xception_time_plus": 128, "tst_plus": 16}


def _series(b: int, c: int, t: int) -> torch.Tensor:
    return torch.randn(b, c, t, generator=torch.Generator().manual_seed(t))


@pytest.mark.parametrize("name", sorted(TINY))
def test_backbone_builds_and_gives_global_and_per_step_features(name: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(name, spatial_dims=1, in_channels=3, **TINY[name])
    assert isinstance(enc, TsaiEncoder) and not hasattr(enc, "head")
    x = _series(4, 3, 32)
    x[1, :, 20:] = float("nan")  # padding
    x[2, 0, 5] = float("nan")  # a missing value
    before = x.clone()
    out = enc.eval()(x, dense=True)
    assert out.global_features.shape == (4, DIMS[name]) == (4, enc.feature_dim)
    assert out.dense is not None and out.dense.shape == (4, DIMS[name], 32)
    assert torch.isfinite(out.global_features).all() and torch.isfinite(out.dense).all()
    torch.testing.assert_close(out.global_features, masked_mean_pool(out.dense, series_steps(x)))
    torch.testing.assert_close(x, before, equal_nan=True)
    again = encoder_from_architecture(architecture_of(enc))
    again.load_state_dict(enc.state_dict())
    torch.testing.assert_close(again.eval()(x).global_features, out.global_features)


def test_max_pooling_option_and_training_gradients() -> None:
    enc = build_encoder("resnet_plus", spatial_dims=1, in_channels=1, nf=4, pooling="max")
    x = _series(3, 1, 20)
    x[0, :, 12:] = float("nan")
    out = enc(x, dense=True)
    assert out.dense is not None
    torch.testing.assert_close(out.global_features, masked_max_pool(out.dense, series_steps(x)))
    out.global_features.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_tst_pads_short_series_and_masks_the_padding() -> None:
    torch.manual_seed(0)
    enc = build_encoder("tst_plus", spatial_dims=1, in_channels=2, **TINY["tst_plus"]).eval()
    x = _series(2, 2, 20)
    short = enc(x, dense=True)
    assert short.dense is not None and short.dense.shape == (2, 16, 20)
    padded = torch.cat([x, torch.full((2, 2, 9), float("nan"))], dim=2)
    long = enc(padded, dense=True)
    assert long.dense is not None
    torch.testing.assert_close(long.dense[..., :20], short.dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(long.global_features, short.global_features, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="^encoder.kwargs.seq_len: .*seq_len=32 steps, got 40"):
        enc(_series(2, 2, 40))


def test_bad_options_raise_clear_errors() -> None:
    with pytest.raises(ConfigError, match="^encoder.kwargs.seq_len: encoder 'tst_plus' needs"):
        build_encoder("tst_plus", spatial_dims=1, in_channels=1)
    with pytest.raises(ConfigError, match="^encoder.kwargs.max_seq_len: is set by the encoder"):
        build_encoder("tst_plus", spatial_dims=1, in_channels=1, seq_len=8, max_seq_len=4)
    with pytest.raises(ConfigError, match="^encoder.kwargs.c_in: .*remove it"):
        build_encoder("resnet_plus", spatial_dims=1, in_channels=1, c_in=3)
    with pytest.raises(ConfigError, match="^encoder.kwargs: .*could not build tsai ResNetPlus"):
        build_encoder("resnet_plus", spatial_dims=1, in_channels=1, no_such_option=3)
    with pytest.raises(ConfigError, match="^encoder.kwargs.pooling: .*got 'median'"):
        build_encoder("resnet_plus", spatial_dims=1, in_channels=1, pooling="median")
    with pytest.raises(ConfigError, match="^encoder.kwargs.seq_len: .*got 0"):
        build_encoder("resnet_plus", spatial_dims=1, in_channels=1, seq_len=0)
    with pytest.raises(ConfigError, match="^encoder.spatial_dims: .*spatial_dims must be 1"):
        build_encoder("inception_time_plus", spatial_dims=2, in_channels=1)


def test_only_the_named_tsai_modules_are_imported() -> None:
    build_encoder("resnet_plus", spatial_dims=1, in_channels=1, nf=4)
    assert "tsai.models.ResNetPlus" in sys.modules
    assert "tsai.all" not in sys.modules
