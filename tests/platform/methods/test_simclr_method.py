"""SimCLR / DCL methods: registry, config errors, loss against a loop reference on the
method's own views, keyed views, the collapse monitor, and the EMA target."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medssl.platform.augment import AugmentConfig
from medssl.platform.batch import Batch
from medssl.platform.encoders.base import Encoder, EncoderOutput
from medssl.platform.errors import ConfigError
from medssl.platform.methods.simclr import DCL, SimCLR, ema_momentum_at
from medssl.platform.registry import METHODS


class TinyEncoder(Encoder):
    """Two convolutions and global average pooling; no batch norm."""

    name = "tiny"

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, width: int = 8) -> None:
        super().__init__(spatial_dims, in_channels)
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.body = nn.Sequential(
            conv(in_channels, 4, 3, padding=1), nn.Tanh(), conv(4, width, 3, stride=2, padding=1)
        )
        self.feature_dim = width

    def forward(self, x: torch.Tensor, dense: bool = False) -> EncoderOutput:
        self.check_input(x)
        return EncoderOutput(self.body(x).flatten(2).mean(dim=2))


def _batch(
    n: int = 6, spatial: tuple[int, ...] = (16, 16), dtype: torch.dtype = torch.float32
) -> Batch:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, *spatial, generator=gen, dtype=dtype)
    return Batch(x=x, index=torch.arange(10, 10 + n))


def _method(cls: type[SimCLR] = SimCLR, **config: object) -> SimCLR:
    torch.manual_seed(0)
    return cls(TinyEncoder(), {"projection_dim": 16, "hidden_dim": 32, **config})


def _nt_xent_loops(z1: torch.Tensor, z2: torch.Tensor, tau: float, decoupled: bool) -> float:
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n, b = z.shape[0], z.shape[0] // 2
    losses = []
    for i in range(n):
        j = (i + b) % n
        denominator = sum(
            math.exp(float(z[i] @ z[k]) / tau)
            for k in range(n)
            if k != i and not (decoupled and k == j)
        )
        losses.append(-float(z[i] @ z[j]) / tau + math.log(denominator))
    return sum(losses) / n


def test_registry_and_contract() -> None:
    assert METHODS.get("simclr") is SimCLR and METHODS.get("dcl") is DCL
    assert SimCLR.requires == frozenset({"index"}) and SimCLR.encoder_output == "global"
    assert DCL.Config().loss == "dcl" and SimCLR.Config().loss == "infonce"
    defaults = SimCLR.Config()
    assert (defaults.temperature, defaults.projection_dim, defaults.hidden_dim) == (0.1, 128, 512)
    assert defaults.ema_momentum is None and defaults.augment == AugmentConfig()


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.method\.temprature"):
        SimCLR(TinyEncoder(), {"temprature": 0.1})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.temperature"):
        SimCLR(TinyEncoder(), {"temperature": -1})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.augment\.crop_scale"):
        SimCLR(TinyEncoder(), {"augment": {"crop_scale": [0.9, 0.2]}})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.loss"):
        SimCLR(TinyEncoder(), {"loss": "triplet"})
    method = SimCLR(TinyEncoder(), {"name": "simclr", "augment": {"rotate_degrees": 5}})
    assert method.config.augment.rotate_degrees == 5
    assert method.card()["name"] == "simclr" and method.card()["temperature"] == 0.1


@pytest.mark.parametrize("cls", [SimCLR, DCL])
def test_loss_matches_loop_reference_on_the_methods_views(cls: type[SimCLR]) -> None:
    method = _method(cls, temperature=0.2).double()
    batch = _batch(dtype=torch.float64)
    out = method(batch)
    assert set(out) == {"loss", "embedding_std", "positive_similarity"}
    assert all(v.ndim == 0 for v in out.values())
    with torch.no_grad():
        z = method.projector(method.encoder.global_features(method.make_views(batch)))
    z1, z2 = z.chunk(2)
    expected = _nt_xent_loops(z1, z2, 0.2, decoupled=cls is DCL)
    assert float(out["loss"].detach()) == pytest.approx(expected, abs=1e-10)
    cosine = torch.nn.functional.cosine_similarity(z1, z2).mean()
    assert float(out["positive_similarity"]) == pytest.approx(float(cosine), abs=1e-6)


def test_backward_reaches_encoder_and_projector() -> None:
    method = _method()
    method(_batch())["loss"].backward()
    for name, p in method.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_views_are_keyed_by_index_seed_and_epoch() -> None:
    method = _method()
    batch = _batch()
    views = method.make_views(batch)
    assert views.shape == (12, 1, 16, 16)
    assert torch.equal(views, method.make_views(batch))
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    shuffled = Batch(x=batch["x"][perm], index=batch["index"][perm])
    torch.testing.assert_close(method.make_views(shuffled)[:6], views[:6][perm])
    loss = method(batch)["loss"]
    torch.testing.assert_close(method(shuffled)["loss"], loss)
    method.epoch = 1
    assert not torch.allclose(method.make_views(batch), views)
    method.epoch, method.seed = 0, 5
    assert not torch.allclose(method.make_views(batch), views)


def test_missing_index_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'index'"):
        _method()(Batch(x=torch.rand(2, 1, 8, 8)))


def test_collapse_monitor() -> None:
    method = _method()
    gen = torch.Generator().manual_seed(0)
    random_unit = torch.nn.functional.normalize(torch.randn(1000, 16, generator=gen), dim=1)
    method._embed = lambda images, target=False: random_unit  # type: ignore[method-assign]
    # Spread-out unit vectors in D dims have per-dim std 1/sqrt(D): the monitor reads ~1.
    assert float(method(_batch())["embedding_std"]) == pytest.approx(1.0, abs=0.05)
    del method._embed
    with torch.no_grad():
        method.projector[-1].weight.zero_()
        method.projector[-1].bias.fill_(1.0)
    out = method(_batch())
    assert float(out["embedding_std"]) < 1e-6
    assert float(out["positive_similarity"]) == pytest.approx(1.0, abs=1e-6)


def test_3d_input() -> None:
    torch.manual_seed(0)
    method = SimCLR(TinyEncoder(spatial_dims=3), {"projection_dim": 8, "hidden_dim": 16})
    out = method(_batch(4, (8, 10, 12)))
    assert torch.isfinite(out["loss"])


def test_ema_schedule_values() -> None:
    assert ema_momentum_at(0.99, 0, 100) == pytest.approx(0.99)
    assert ema_momentum_at(0.99, 50, 100) == pytest.approx(0.995)
    assert ema_momentum_at(0.99, 100, 100) == pytest.approx(1.0)
    assert ema_momentum_at(0.99, 500, 100) == pytest.approx(1.0)


def test_ema_target_branch() -> None:
    method = _method(ema_momentum=0.9)
    assert method.target_encoder is not None and method.target_projector is not None
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    assert all(id(p) not in trainable for p in method.target_encoder.parameters())
    out = method(_batch())
    out["loss"].backward()
    assert all(p.grad is None for p in method.target_encoder.parameters())
    assert method.encoder.body[0].weight.grad is not None

    online = method.encoder.body[0].weight
    target = method.target_encoder.body[0].weight
    torch.testing.assert_close(online, target)
    before = target.detach().clone()
    with torch.no_grad():
        online.add_(1.0)
    method.after_optimizer_step(0, 10)  # momentum 0.9 at step 0
    torch.testing.assert_close(target, before + 0.1, atol=1e-6, rtol=0)
    method.after_optimizer_step(10, 10)  # momentum 1 at the end: no change
    torch.testing.assert_close(target, before + 0.1, atol=1e-6, rtol=0)


def test_ema_loss_uses_target_keys() -> None:
    method = _method(ema_momentum=0.99).double()
    batch = _batch(dtype=torch.float64)
    same = float(method(batch)["loss"].detach())
    plain = _method().double()
    assert same == pytest.approx(float(plain(batch)["loss"].detach()), abs=1e-10)
    with torch.no_grad():
        for p in method.target_projector.parameters():
            p.add_(0.3 * torch.randn_like(p))
    assert float(method(batch)["loss"].detach()) != pytest.approx(same, abs=1e-6)
