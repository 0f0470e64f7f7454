"""Global and local contrast methods on a tiny 2-D UNet: registry, config errors, the views,
the loss wiring, forward + backward, and a frozen encoder in the local stage."""

from __future__ import annotations

import pytest
import torch

from medssl.platform.augment import sample_keys
from medssl.platform.augment.intensity import intensity_augment
from medssl.platform.batch import Batch
from medssl.platform.encoders.unet import UNetEncoder
from medssl.platform.errors import ConfigError
from medssl.platform.losses.global_local import global_info_nce, local_info_nce
from medssl.platform.methods.global_local import GlobalContrast, LocalContrast
from medssl.platform.registry import METHODS

FEATURES = (4, 4, 8, 8, 8, 4)
ENCODER_PREFIXES = UNetEncoder.encoder_prefixes


def _unet() -> UNetEncoder:
    torch.manual_seed(0)
    return UNetEncoder(2, 1, features=FEATURES)


def _partition_batch(volumes: int = 3, partitions: int = 4, side: int = 32) -> Batch:
    """One slice per (volume, partition), as the volume-partition sampler serves them."""
    gen = torch.Generator().manual_seed(1)
    n = volumes * partitions
    return Batch(
        x=torch.rand(n, 1, side, side, generator=gen),
        index=torch.arange(100, 100 + n),
        subject=torch.arange(volumes).repeat_interleave(partitions) + 5,
        partition=torch.arange(partitions).repeat(volumes),
    )


def _grads(module: torch.nn.Module, prefixes: tuple[str, ...]) -> list[torch.Tensor | None]:
    return [p.grad for n, p in module.named_parameters() if n.startswith(prefixes)]


def test_registry_and_config_errors() -> None:
    assert METHODS.get("global_contrast") is GlobalContrast
    assert METHODS.get("local_contrast") is LocalContrast
    with pytest.raises(ConfigError, match=r"pretrain\.method\.strategy"):
        GlobalContrast(_unet(), {"strategy": "GX"})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.decoder_blocks"):
        LocalContrast(_unet(), {"decoder_blocks": 5})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.augment\.contrast"):
        LocalContrast(_unet(), {"augment": {"contrast": [1.3, 0.7]}})
    assert GlobalContrast(_unet(), {"name": "global_contrast"}).config.hidden_dim == 1024
    assert {"subject", "partition"} <= GlobalContrast.requires


def test_a_partial_augment_changes_only_its_keys_of_the_paper_views() -> None:
    paper = GlobalContrast(_unet()).config.augment
    changed = GlobalContrast(_unet(), {"augment": {"brightness": 0.0}}).config.augment
    assert changed.brightness == 0.0
    assert changed.model_dump() == {**paper.model_dump(), "brightness": 0.0}
    assert changed.crop_scale == (0.2, 0.3) and changed.flip_prob == 0.0


@pytest.mark.parametrize("strategy", ["GR", "GD-", "GD"])
def test_global_forward_backward_and_loss_wiring(strategy: str) -> None:
    method = GlobalContrast(_unet(), {"strategy": strategy, "hidden_dim": 32, "projection_dim": 16})
    batch = _partition_batch()
    out = method(batch)
    assert set(out) == {"loss", "embedding_std", "positive_similarity"}
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    # The decoder is not used by the global stage: only encoder levels and projector learn.
    grads = _grads(method, (*(f"encoder.{p}" for p in ENCODER_PREFIXES), "projector."))
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    # Same loss from the loss function on the method's own embeddings and the batch labels.
    images = method.make_views(batch)
    views = images.shape[0] // batch.batch_size
    assert views == (2 if strategy == "GR" else 3)
    if strategy != "GR":
        torch.testing.assert_close(images[: batch.batch_size], batch["x"])  # the original
    with torch.no_grad():
        z = method.projector(method.encoder.global_features(images))
        expected = global_info_nce(
            z,
            batch["subject"].repeat(views),
            batch["partition"].repeat(views),
            torch.arange(views).repeat_interleave(batch.batch_size),
            strategy=strategy,  # type: ignore[arg-type]
        )
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_global_needs_partition_field() -> None:
    method = GlobalContrast(_unet(), {"hidden_dim": 32, "projection_dim": 16})
    batch = _partition_batch()
    with pytest.raises(ValueError, match="partition"):
        method(Batch(x=batch["x"], index=batch["index"], subject=batch["subject"]))


def test_unet_partial_decoder() -> None:
    encoder = _unet()
    x = torch.rand(2, 1, 32, 32)
    deepest, skips = encoder.encode(x)
    sides = {1: 4, 2: 8, 3: 16, 4: 32}
    for blocks, side in sides.items():
        out = encoder.decode(deepest, skips, blocks=blocks)
        assert out.shape == (2, encoder.decoder_widths[blocks - 1], side, side)
    torch.testing.assert_close(encoder.decode(deepest, skips), encoder(x, dense=True).dense)
    with pytest.raises(ValueError, match="blocks"):
        encoder.decode(deepest, skips, blocks=0)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"negatives": "nearby", "positions": "all", "chunk_size": 3},
        {"variant": "D", "decoder_blocks": 3},
    ],
)
def test_local_trains_decoder_only(config: dict[str, object]) -> None:
    encoder = _unet()
    frozen_before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    method = LocalContrast(encoder, config)
    batch = _partition_batch(volumes=3, partitions=2)
    out = method(batch)
    assert torch.isfinite(out["loss"]) and torch.isfinite(out["positive_similarity"])
    out["loss"].backward()
    used = UNetEncoder.decoder_prefixes[: method.config.decoder_blocks]
    unused = UNetEncoder.decoder_prefixes[method.config.decoder_blocks :]
    assert all(g is None for g in _grads(encoder, ENCODER_PREFIXES + unused))
    assert not any(
        p.requires_grad for n, p in encoder.named_parameters() if n.startswith(ENCODER_PREFIXES)
    )
    trained = _grads(encoder, used) + _grads(method.head, ("",))
    assert trained and all(g is not None and torch.isfinite(g).all() for g in trained)
    assert sum(float(g.abs().sum()) for g in trained if g is not None) > 0
    # An optimiser over the trainable parameters (as the engine builds it) leaves the encoder.
    optimiser = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1.0)
    optimiser.step()
    for name, p in encoder.named_parameters():
        if name.startswith(ENCODER_PREFIXES + unused):
            torch.testing.assert_close(p, frozen_before[name])


def test_local_views_are_intensity_only_and_loss_wiring() -> None:
    method = LocalContrast(_unet(), {"augment": {"noise_std": 0.01}})
    method.train()
    assert not method.encoder.net.conv_0.training and method.encoder.net.upcat_4.training
    batch = _partition_batch(volumes=2, partitions=2)
    out = method(batch)
    x, index = batch["x"], batch["index"]
    views = [intensity_augment(x, sample_keys(index, 0, 0, v), method.intensity) for v in (0, 1)]
    assert not torch.equal(views[0], views[1])
    encoder = method.encoder
    with torch.no_grad():
        maps = [method.head(encoder.decode(*encoder.encode(v), blocks=2)) for v in views]
        expected = local_info_nce(maps[0], maps[1])
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_local_errors() -> None:
    method = LocalContrast(_unet(), {"variant": "D"})
    batch = _partition_batch()
    with pytest.raises(ValueError, match="subject"):
        method(Batch(x=batch["x"], index=batch["index"]))
    with pytest.raises(ValueError, match="unet"):
        LocalContrast(UNetEncoder(3, 1, features=FEATURES))
