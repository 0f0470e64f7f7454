"""The lvmmed method: affinity shapes, ablation switches, gradients reaching every part, keyed
noise, and learning to match the two views of a fixed batch."""

from __future__ import annotations

import pytest
import torch

from medssl.platform.batch import Batch
from medssl.platform.encoders import build_encoder
from medssl.platform.errors import ConfigError
from medssl.platform.losses.lvmmed import knn_graph, normalised_adjacency
from medssl.platform.methods.lvmmed import GraphConvolution, LVMMed
from medssl.platform.solvers import hamming_loss

SMALL = {"group_size": 4, "k": 2, "gcn_dim": 16, "projection_dim": 16, "hidden_dim": 32}


def _encoder() -> torch.nn.Module:
    return build_encoder(
        "resnet", spatial_dims=2, in_channels=1, depth=10, widen_factor=0.125, no_max_pool=True
    )


def _batch(n: int = 8, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch(x=torch.rand(n, 1, 32, 32, generator=generator), index=torch.arange(n))


def test_affinities_have_the_graph_shapes() -> None:
    torch.manual_seed(0)
    method = LVMMed(_encoder(), SMALL)
    parts = method.affinities(_batch(10))  # 10 rows: two graphs of 4, two rows unused
    assert parts["unary"].shape == (2, 4, 4)
    assert parts["quadratic"].shape == (2, 16, 16)
    assert parts["quadratic"].abs().sum() > 0
    assert parts["z"].shape == (20, 16)


@pytest.mark.parametrize(
    "switch", ["second_order", "message_passing", "gumbel_noise", "local_term"]
)
def test_each_ablation_switch_removes_its_part(switch: str) -> None:
    torch.manual_seed(0)
    full = LVMMed(_encoder(), SMALL)
    torch.manual_seed(0)
    ablated = LVMMed(_encoder(), {**SMALL, switch: False})
    batch = _batch()
    if switch == "second_order":
        assert ablated.affinities(batch)["quadratic"].abs().sum() == 0
    elif switch == "message_passing":
        assert ablated.gcn is None and full.gcn is not None
    elif switch == "local_term":
        # without the local term the vertex affinity is the plain cosine of the projections
        parts = ablated.affinities(batch)
        z = torch.nn.functional.normalize(parts["z"], dim=1)
        # the GCN sits between z and the affinity, so compare with the GCN off as well
        plain = LVMMed(ablated.encoder, {**SMALL, "local_term": False, "message_passing": False})
        plain.projector = ablated.projector
        unary = plain.affinities(batch)["unary"]
        zs, zt = z[:8].reshape(2, 4, -1), z[8:].reshape(2, 4, -1)
        torch.testing.assert_close(unary, zs @ zt.transpose(1, 2), atol=1e-5, rtol=0)
    else:  # no noise: the loss is a deterministic function of the batch
        first, second = ablated(batch)["loss"], ablated(batch)["loss"]
        assert torch.equal(first, second)
    out = ablated(batch)
    assert torch.isfinite(out["loss"])


def test_the_gradient_reaches_encoder_projector_and_gcn() -> None:
    torch.manual_seed(0)
    method = LVMMed(_encoder(), SMALL)
    out = method(_batch())
    out["loss"].backward()
    for part in (method.encoder, method.projector, method.gcn):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), part


def test_noise_is_keyed_by_sample_seed_and_epoch() -> None:
    method = LVMMed(_encoder(), SMALL)
    index = torch.arange(8)
    first = method._gumbel(index, 2, torch.float32)
    assert torch.equal(first, method._gumbel(index, 2, torch.float32))
    method.epoch = 1
    assert not torch.equal(first, method._gumbel(index, 2, torch.float32))


def test_training_on_a_fixed_batch_learns_to_match_the_views() -> None:
    torch.manual_seed(0)
    config = {**SMALL, "gumbel_noise": False,
              "augment": {"crop_scale": (0.6, 1.0), "rotate_degrees": 0.0, "noise_std": 0.0}}
    method = LVMMed(_encoder(), config)
    batch = _batch(16)
    optimiser = torch.optim.Adam(method.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = method(batch)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_bad_settings_name_their_key() -> None:
    with pytest.raises(ConfigError, match="pretrain.method.group_size"):
        LVMMed(_encoder(), {"group_size": 1})
    with pytest.raises(ConfigError, match="pretrain.method.alpha"):
        LVMMed(_encoder(), {"alpha": 1.5})


@pytest.mark.parametrize(("margin", "expected"), [(0.0, 0.0), (0.25, 0.0), (1.0, 8.0)])
def test_the_margin_makes_the_identity_win_by_that_much(margin: float, expected: float) -> None:
    method = LVMMed(_encoder(), {**SMALL, "gumbel_noise": False, "margin": margin})
    # The identity beats every other assignment by 0.5 per image.
    unary = (0.5 * torch.eye(4))[None].requires_grad_(True)
    v = method.match(unary, torch.zeros(1, 16, 16), torch.arange(8))
    loss = hamming_loss(v)
    assert float(loss) == expected
    loss.backward()
    assert unary.grad is not None
    if expected > 0:  # below the margin the identity's affinities are pushed up
        assert (unary.grad.diagonal(dim1=1, dim2=2) < 0).all()
    else:
        assert unary.grad.abs().sum() == 0


def test_a_collapsed_encoder_still_has_a_loss_with_the_margin() -> None:
    """All images alike give equal affinities: without the margin the identity ties for the
    best assignment (the plain Hamming loss can be zero at a collapse); with it, it loses."""
    method = LVMMed(_encoder(), {**SMALL, "gumbel_noise": False, "second_order": False})
    flat = torch.full((1, 4, 4), 0.9)
    assert float(hamming_loss(method.match(flat, torch.zeros(1, 16, 16), torch.arange(8)))) == 8


def test_the_residual_gcn_keeps_the_nodes_of_a_graph_apart() -> None:
    """Two layers of neighbourhood averaging make the nodes of a dense graph alike; the
    residual keeps each node's own embedding (the default)."""
    torch.manual_seed(0)
    z = torch.randn(1, 16, 16)
    propagation = normalised_adjacency(knn_graph(z, 5))
    spread = {}
    for residual in (False, True):
        torch.manual_seed(0)
        out = GraphConvolution(16, 16, residual=residual)(z, propagation)
        unit = torch.nn.functional.normalize(out[0], dim=1)
        off = unit @ unit.T - torch.eye(16)
        spread[residual] = float(off.sum() / (16 * 15))
    assert spread[True] < spread[False]
    assert LVMMed.Config().gcn_residual is True
