"""The ECG patch transformer: registration and parameter count, shapes for 1 and 12 leads at
1000 and 1024 samples, the dropped remainder, the per-sample dense map, patch embedding against
a loop reference, the factory and model-card round trip, gradients, determinism and errors."""

from __future__ import annotations

import pytest
import torch

from medssl.platform.encoders import build_encoder, encoder_from_architecture
from medssl.platform.encoders.ecg_patch import ECGPatchEncoder
from medssl.platform.encoders.factory import architecture_of
from medssl.platform.errors import ConfigError
from medssl.platform.registry import ENCODERS

SMALL = {"width": 32, "depth": 2, "heads": 2}


def _encoder(leads: int = 12, **options: object) -> ECGPatchEncoder:
    torch.manual_seed(0)
    settings = {**SMALL, **options}
    return ECGPatchEncoder(spatial_dims=1, in_channels=leads, **settings).eval()  # type: ignore[arg-type]


def _ecg(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_registered_and_default_size() -> None:
    assert ENCODERS.get("ecg_patch") is ECGPatchEncoder
    enc = ECGPatchEncoder(spatial_dims=1, in_channels=12)
    assert enc.feature_dim == enc.dense_dim == 128 and not enc.has_decoder
    assert enc.patch_embed.kernel_size == enc.patch_embed.stride == (50,)
    assert enc.position.shape == (1, 64, 128) and len(enc.blocks.layers) == 4
    # Measured: 878,464 at 12 leads (76,928 patch embedding + 8,192 positions + 4 x 198,272
    # per layer + 256 final norm); 808,064 at 1 lead.
    assert sum(p.numel() for p in enc.parameters()) == 878_464
    one_lead = ECGPatchEncoder(spatial_dims=1, in_channels=1)
    assert sum(p.numel() for p in one_lead.parameters()) == 808_064


@pytest.mark.parametrize("leads", [1, 12])
@pytest.mark.parametrize("length", [1000, 1024])
def test_output_shapes(leads: int, length: int) -> None:
    enc = _encoder(leads)
    x = _ecg(3, leads, length)
    out = enc(x, dense=True)
    assert out.global_features.shape == (3, 32)
    assert out.dense is not None and out.dense.shape == (3, 32, length)
    assert enc(x).dense is None
    tokens = enc.tokens(x)
    assert tokens.shape == (3, 20, 32)
    torch.testing.assert_close(out.global_features, tokens.mean(dim=1))


def test_samples_after_the_last_whole_patch_are_dropped() -> None:
    enc = _encoder()
    x = _ecg(2, 12, 1024)
    full, cropped = enc(x, dense=True), enc(x[..., :1000], dense=True)
    torch.testing.assert_close(full.global_features, cropped.global_features)
    assert full.dense is not None and cropped.dense is not None
    torch.testing.assert_close(full.dense[..., :1000], cropped.dense)
    # The 24 dropped samples take the last patch's token.
    torch.testing.assert_close(full.dense[..., 1000:], cropped.dense[..., -1:].expand(-1, -1, 24))
    changed = x.clone()
    changed[..., 1000:] = 100.0
    torch.testing.assert_close(enc(changed).global_features, full.global_features)


def test_dense_map_gives_each_sample_its_patch_token() -> None:
    enc = _encoder(patch_size=10)
    x = _ecg(2, 12, 45)
    tokens = enc.tokens(x)
    dense = enc(x, dense=True).dense
    assert dense is not None
    for t in range(45):
        torch.testing.assert_close(dense[..., t], tokens[:, min(t // 10, 3)])


def test_patch_embedding_matches_a_loop_over_patches() -> None:
    enc = _encoder(leads=3, patch_size=7).double()
    x = _ecg(2, 3, 30).double()
    weight, bias = enc.patch_embed.weight, enc.patch_embed.bias
    expected = torch.stack(
        [torch.einsum("bct,oct->bo", x[..., 7 * n : 7 * (n + 1)], weight) + bias for n in range(4)],
        dim=1,
    )
    torch.testing.assert_close(enc.patch_embed(x).transpose(1, 2), expected)


def test_factory_and_card_round_trip() -> None:
    enc = build_encoder("ecg_patch", spatial_dims=1, in_channels=12, width=64)
    assert isinstance(enc, ECGPatchEncoder) and enc.feature_dim == 64
    card = architecture_of(enc)
    assert card["kwargs"] == {
        "patch_size": 50,
        "max_patches": 64,
        "width": 64,
        "depth": 4,
        "heads": 4,
        "mlp_ratio": 4.0,
        "dropout": 0.1,
    }
    rebuilt = encoder_from_architecture(card)
    rebuilt.load_state_dict(enc.state_dict())
    x = _ecg(2, 12, 1000)
    torch.testing.assert_close(rebuilt.eval()(x).global_features, enc.eval()(x).global_features)


def test_gradient_reaches_every_parameter_and_the_input() -> None:
    enc = _encoder(leads=2).train()
    x = _ecg(4, 2, 500).requires_grad_(True)
    out = enc(x, dense=True)
    assert out.dense is not None
    (out.global_features.square().sum() + out.dense.mean()).backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    # Only the first T // patch_size = 10 positions are used.
    assert not enc.position.grad[:, 10:].any()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_eval_is_deterministic_and_per_sample_and_dropout_acts_in_training() -> None:
    enc = _encoder(dropout=0.5)
    again = _encoder(dropout=0.5)
    x = _ecg(3, 12, 600)
    first = enc(x).global_features
    assert torch.equal(first, again(x).global_features)
    assert torch.equal(first, enc(x).global_features)
    torch.testing.assert_close(enc(x[1:2]).global_features, first[1:2])
    enc.train()
    torch.manual_seed(1)
    assert not torch.equal(enc(x).global_features, enc(x).global_features)


def test_too_long_or_too_short_series_are_refused() -> None:
    enc = _encoder(max_patches=20)
    enc(_ecg(1, 12, 1049))  # 20 patches and a dropped remainder fit
    with pytest.raises(ValueError, match=r"T=1050 .*patch_size=50 = 21 patches.*max_patches=20"):
        enc(_ecg(1, 12, 1050))
    with pytest.raises(ValueError, match=r"T=49 .* = 0 patches"):
        enc(_ecg(1, 12, 49))
    with pytest.raises(ValueError, match=r"T=3300 .*max_patches=64"):
        _encoder()(_ecg(1, 12, 3300))


def test_bad_inputs_and_options_are_refused() -> None:
    enc = _encoder()
    with pytest.raises(ValueError, match=r"expects input \(B, 12, \*\) got \(2, 1, 1000\)"):
        enc(_ecg(2, 1, 1000))
    x = _ecg(2, 12, 1000)
    x[0, 3, 10] = float("nan")
    with pytest.raises(ValueError, match="input contains NaN"):
        enc(x)
    with pytest.raises(ValueError, match="spatial_dims must be 1, got 2"):
        ECGPatchEncoder(spatial_dims=2, in_channels=12)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"kernel": 3}, "encoder.kwargs.kernel: encoder 'ecg_patch' has no such option"),
        ({"width": 30}, r"encoder.kwargs.heads: heads must divide width=30, got 4"),
        ({"patch_size": 0}, r"encoder.kwargs.patch_size: .*greater than or equal to 1, got 0"),
        ({"max_patches": 2.5}, r"encoder.kwargs.max_patches: .*valid integer, got 2.5"),
        ({"dropout": 1.0}, r"encoder.kwargs.dropout: .*less than 1, got 1.0"),
        ({"mlp_ratio": float("inf")}, r"encoder.kwargs.mlp_ratio: .*finite number, got inf"),
    ],
)
def test_bad_options_name_the_key(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_encoder("ecg_patch", spatial_dims=1, in_channels=12, **options)
