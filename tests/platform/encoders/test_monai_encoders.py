"""The MONAI encoders behind the Encoder contract: shapes, the decoder only on demand, encoder
prefixes that split the state dict, the re-implemented forwards against MONAI's own."""

from __future__ import annotations

import json
import math

import pytest
import torch
from monai.networks.nets import BasicUNet, SegResNet, SwinUNETR

from medssl.platform.encoders import (
    Encoder,
    SegmentationNet,
    UNetEncoder,
    architecture_of,
    build_encoder,
    encoder_from_architecture,
    encoder_options,
)
from medssl.platform.errors import ConfigError
from medssl.platform.registry import ENCODERS

# Tiny configurations so that every test runs in about a second on two CPU cores.
TINY = {
    "unet": {"features": [4, 8, 8, 16, 16, 8]},
    "segresnet": {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]},
    "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1]},
    "resnet": {"depth": 10, "widen_factor": 0.125},
}
# Swin needs sides divisible by 32 and a deepest map of more than one voxel (instance norm).
SHAPES = {
    ("unet", 2): (2, 1, 32, 32),
    ("unet", 3): (2, 1, 32, 32, 32),
    ("segresnet", 2): (2, 1, 32, 32),
    ("segresnet", 3): (2, 1, 16, 16, 16),
    ("swinunetr", 2): (2, 1, 64, 32),
    ("swinunetr", 3): (1, 1, 32, 32, 64),
    ("resnet", 2): (2, 1, 32, 32),
    ("resnet", 3): (2, 1, 16, 16, 16),
}
CASES = sorted(SHAPES)


def make(name: str, dims: int, in_channels: int = 1) -> tuple[Encoder, torch.Tensor]:
    torch.manual_seed(0)
    encoder = build_encoder(name, spatial_dims=dims, in_channels=in_channels, **TINY[name])
    shape = SHAPES[(name, dims)]
    return encoder, torch.randn(shape[0], in_channels, *shape[2:])


def under_prefixes(key: str, encoder: Encoder) -> bool:
    return any(key.startswith(p) for p in encoder.encoder_prefixes)


def test_registry_lists_the_monai_encoders() -> None:
    assert {"unet", "segresnet", "swinunetr", "resnet"} <= set(ENCODERS.names())


@pytest.mark.parametrize(("name", "dims"), CASES)
def test_shapes_and_gradients(name: str, dims: int) -> None:
    encoder, x = make(name, dims)
    x.requires_grad_(True)
    out = encoder(x, dense=True)
    assert out.global_features.shape == (x.shape[0], encoder.feature_dim)
    if encoder.has_decoder:
        assert out.dense is not None
        assert out.dense.shape == (x.shape[0], encoder.dense_dim, *x.shape[2:])
        loss = out.global_features.square().mean() + out.dense.square().mean()
    else:
        assert out.dense is None and encoder.dense_dim is None
        loss = out.global_features.square().mean()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for key, param in encoder.named_parameters():
        assert param.grad is not None, f"{key} received no gradient"
        assert torch.isfinite(param.grad).all(), key


@pytest.mark.parametrize(("name", "dims"), CASES)
def test_global_path_skips_decoder_and_prefixes_split_the_weights(name: str, dims: int) -> None:
    encoder, x = make(name, dims)
    calls = []
    decoder_modules = [
        (key, module)
        for key, module in encoder.named_modules()
        if key
        and not under_prefixes(f"{key}.", encoder)
        and next(module.parameters(False), None) is not None
    ]
    for key, module in decoder_modules:
        module.register_forward_hook(lambda m, i, o, key=key: calls.append(key))
    out = encoder(x)
    assert out.dense is None
    assert calls == [], f"dense=False ran decoder modules {sorted(set(calls))}"
    # The global path touches exactly the parameters under encoder_prefixes.
    out.global_features.square().mean().backward()
    with_grad = {k for k, p in encoder.named_parameters() if p.grad is not None}
    prefixed = {k for k, _ in encoder.named_parameters() if under_prefixes(k, encoder)}
    assert with_grad == prefixed
    if encoder.has_decoder:
        assert decoder_modules, "a decoder-having encoder must own weights outside its prefixes"
        encoder(x, dense=True)
        assert calls, "dense=True did not run the decoder"
    else:
        assert prefixed == {k for k, _ in encoder.named_parameters()}


@pytest.mark.parametrize(("name", "dims"), [("unet", 2), ("segresnet", 3), ("resnet", 3)])
def test_global_vector_is_the_mean_of_the_deepest_map(name: str, dims: int) -> None:
    encoder, x = make(name, dims)
    encoder.eval()
    with torch.no_grad():
        deepest, _ = encoder.encode(x)
        pooled = encoder(x).global_features
    deep = deepest.double()
    for b in range(deep.shape[0]):
        for c in range(deep.shape[1]):
            values = deep[b, c].flatten().tolist()
            assert math.isclose(pooled[b, c].item(), sum(values) / len(values), abs_tol=1e-5)


@pytest.mark.parametrize(("name", "dims"), [("unet", 3), ("segresnet", 2), ("swinunetr", 2)])
def test_segmentation_net_works_with_each_decoder(name: str, dims: int) -> None:
    encoder, x = make(name, dims)
    net = SegmentationNet(encoder, num_classes=3)
    logits = net(x)
    assert logits.shape == (x.shape[0], 3, *x.shape[2:])
    logits.mean().backward()
    assert net.head.weight.grad is not None


def test_segmentation_net_refuses_resnet() -> None:
    encoder, _ = make("resnet", 3)
    with pytest.raises(ValueError, match="no decoder"):
        SegmentationNet(encoder, num_classes=2)


def _copy_into(reference: torch.nn.Module, net: SegmentationNet, head_key: str) -> None:
    """Load our encoder (minus the `net.` prefix) and head into the MONAI reference network."""
    state = {k.removeprefix("encoder.net."): v for k, v in net.state_dict().items()}
    state[f"{head_key}.weight"] = state.pop("head.weight")
    state[f"{head_key}.bias"] = state.pop("head.bias")
    reference.load_state_dict(state, strict=True)  # every key matches, none left over


def test_unet_matches_monai_basicunet() -> None:
    encoder, x = make("unet", 2)
    net = SegmentationNet(encoder, num_classes=2).eval()
    reference = BasicUNet(
        spatial_dims=2, in_channels=1, out_channels=2, features=(4, 8, 8, 16, 16, 8)
    )
    _copy_into(reference, net, "final_conv")
    with torch.no_grad():
        assert torch.allclose(net(x), reference.eval()(x), atol=1e-5)


def test_segresnet_matches_monai_segresnet() -> None:
    encoder, x = make("segresnet", 3)
    net = SegmentationNet(encoder, num_classes=2).eval()
    reference = SegResNet(
        spatial_dims=3,
        init_filters=8,
        in_channels=1,
        out_channels=2,
        blocks_down=(1, 1, 1),
        blocks_up=(1, 1),
    )
    _copy_into(reference, net, "conv_final.2.conv")
    with torch.no_grad():
        assert torch.allclose(net(x), reference.eval()(x), atol=1e-5)


def test_swinunetr_matches_monai_swinunetr() -> None:
    encoder, x = make("swinunetr", 2)
    net = SegmentationNet(encoder, num_classes=2).eval()
    reference = SwinUNETR(
        in_channels=1, out_channels=2, feature_size=12, depths=(1, 1, 1, 1), spatial_dims=2
    )
    _copy_into(reference, net, "out.conv.conv")
    with torch.no_grad():
        assert torch.allclose(net(x), reference.eval()(x), atol=1e-5)


@pytest.mark.parametrize("name", sorted(TINY))
def test_init_kwargs_rebuild_the_same_network(name: str) -> None:
    encoder, x = make(name, 2, in_channels=2)
    architecture = json.loads(json.dumps(architecture_of(encoder)))  # as a model card stores it
    rebuilt = encoder_from_architecture(architecture)
    assert type(rebuilt) is type(encoder) and rebuilt.in_channels == 2
    rebuilt.load_state_dict(encoder.state_dict(), strict=True)
    encoder.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(encoder(x).global_features, rebuilt(x).global_features)


def test_resnet_feature_dim_follows_depth_and_width() -> None:
    for depth, expansion in ((10, 1), (18, 1), (34, 1), (50, 4)):
        encoder = build_encoder("resnet", 2, 1, depth=depth, widen_factor=0.125)
        assert encoder.feature_dim == int(512 * 0.125) * expansion


def test_unknown_options_and_names_are_clear_errors() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^encoder.kwargs.featurs: encoder 'unet' has no such option; remove it or use one "
        r"of: features, act, norm, bias, dropout, upsample$",
    ):
        build_encoder("unet", 3, 1, featurs=[1, 2])
    with pytest.raises(
        ConfigError, match=r"^encoder.name: unknown encoder 'vnet'; available: .*unet"
    ):
        build_encoder("vnet", 3, 1)
    with pytest.raises(ConfigError, match=r"^encoder.spatial_dims: unet takes spatial_dims 2 or 3"):
        build_encoder("unet", 1, 1)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("unet", {"features": [4, 8, 8, 16, 16]}, r"features: .*at least 6 items.*got \[4"),
        ("unet", {"features": [4, 8, 8, 16, 16, True]}, r"features\[5\]: .*integer, got True"),
        ("unet", {"act": "relux"}, r"act: unknown activation; MONAI knows .*got 'relux'"),
        ("unet", {"norm": 3}, r"norm: must be a name or \[name, \{args\}\], got 3"),
        ("segresnet", {"init_filters": 12}, r"init_filters: .*num_groups=8, got 12"),
        (
            "segresnet",
            {"blocks_up": [1]},
            r"blocks_up: .*3 for blocks_down=\[1, 2, 2, 4\], got \[1\]",
        ),
        ("swinunetr", {"feature_size": 10}, r"feature_size: .*multiple of 12, got 10"),
        ("swinunetr", {"num_heads": [5, 6, 12, 24]}, r"num_heads: num_heads\[0\]=5 must divide"),
        ("resnet", {"depth": 11}, r"depth: must be one of .*got 11"),
        ("resnet", {"widen_factor": 0.001}, r"widen_factor: .*at least 1 channel"),
    ],
)
def test_bad_arguments_name_the_key_and_value(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^encoder\.kwargs\.{message}.*encoder '{name}'"):
        build_encoder(name, 3, 1, **kwargs)


def test_options_monai_refuses_inside_a_valid_value_name_the_encoder() -> None:
    with pytest.raises(ConfigError, match=r"^encoder\.kwargs: encoder 'unet' could not be built"):
        build_encoder("unet", 3, 1, act=["LeakyReLU", {"slope": 1}])


def test_the_constructor_takes_keywords_or_a_config() -> None:
    by_keywords = UNetEncoder(spatial_dims=2, in_channels=1, **TINY["unet"])
    config = UNetEncoder.Config(features=(4, 8, 8, 16, 16, 8))
    by_config = UNetEncoder(spatial_dims=2, in_channels=1, config=config)
    assert by_keywords.config == by_config.config == UNetEncoder.validate_config(TINY["unet"])
    assert by_keywords.init_kwargs == by_config.init_kwargs
    assert by_keywords.init_kwargs["features"] == [4, 8, 8, 16, 16, 8]  # JSON: lists, not tuples
    with pytest.raises(ValueError, match=r"encoder.kwargs.dropout: .*got 2.0"):
        UNetEncoder(spatial_dims=2, in_channels=1, dropout=2.0)
    with pytest.raises(TypeError, match="not both"):
        UNetEncoder(spatial_dims=2, in_channels=1, config=config, dropout=0.1)


@pytest.mark.parametrize("name", sorted(TINY))
def test_config_fields_are_the_options_and_the_saved_kwargs(name: str) -> None:
    encoder, _ = make(name, 2)
    fields = list(type(encoder).Config.model_fields)
    assert encoder_options(name) == fields == list(architecture_of(encoder)["kwargs"])


@pytest.mark.parametrize(
    ("name", "shape", "multiple"),
    [
        ("unet", (1, 1, 24, 32), 16),
        ("swinunetr", (1, 1, 32, 48, 64), 32),
        ("segresnet", (1, 1, 18, 16, 16), 4),
    ],
)
def test_input_size_errors_show_the_shape(name: str, shape: tuple[int, ...], multiple: int) -> None:
    encoder = build_encoder(name, len(shape) - 2, 1, **TINY[name])
    with pytest.raises(
        ValueError, match=rf"divisible by {multiple} .*got input \({', '.join(map(str, shape))}\)"
    ):
        encoder(torch.zeros(shape))
    with pytest.raises(ValueError, match="expects input"):
        encoder(torch.zeros(1, 2, *shape[2:]))


def test_swinunetr_explains_the_instance_norm_minimum() -> None:
    encoder = build_encoder("swinunetr", 2, 1, **TINY["swinunetr"])
    with pytest.raises(ValueError, match=r"at least 64 or set norm_name='batch'"):
        encoder(torch.zeros(2, 1, 32, 32), dense=True)
    assert encoder(torch.zeros(2, 1, 32, 32)).global_features.shape == (2, 192)
