"""AutoTCL: the hard-concrete sampler's statistics against closed forms and a quadrature of its
defining formula, the augmented view, gradient isolation between encoder and augmenter,
alternating updates through the engine's parameter groups, the SWA encoder, tsai encoders, the
options against a collapsed keep probability (entropy floor, per-channel minimum, a fresh MMD
reference encoder) and the keep records, also across a resumed fit."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch

from medssl.platform.batch import Batch
from medssl.platform.config import TrainerConfig
from medssl.platform.encoders import build_encoder
from medssl.platform.encoders.ts2vec import TS2VecEncoder
from medssl.platform.engine.pretrain import PretrainModule, optimizer_groups
from medssl.platform.engine.records import RECORDS_FILE, TrainingRecords, read_records
from medssl.platform.engine.trainer import build_trainer, last_checkpoint
from medssl.platform.errors import ConfigError
from medssl.platform.methods.autotcl import AutoTCL
from medssl.platform.methods.autotcl_augmenter import hard_concrete
from medssl.platform.registry import METHODS

SMALL = {"augmenter_hidden_dim": 8, "augmenter_embed_dim": 4, "augmenter_depth": 1}


def _method(**config: object) -> AutoTCL:
    torch.manual_seed(0)
    encoder = TS2VecEncoder(spatial_dims=1, in_channels=2, hidden_dim=8, output_dim=12, depth=2)
    return AutoTCL(encoder, {**SMALL, **config})


def _x(b: int = 6, t: int = 64) -> torch.Tensor:
    x = torch.randn(b, 2, t, generator=torch.Generator().manual_seed(0))
    x[1, :, 50:] = float("nan")
    x[2, 0, 7] = float("nan")
    return x


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _logit(q: float) -> float:
    return math.log(q / (1.0 - q))


def _u_at_most(v: float, bound: float) -> float:
    return min(max((v - bound) / (1 - 2 * bound), 0.0), 1.0)


@pytest.mark.parametrize(
    ("logit", "tau", "gamma", "zeta", "bound"),
    [(0.0, 1.0, -0.1, 1.1, 1e-3), (1.5, 0.5, -0.1, 1.1, 0.0), (-0.7, 1.0, -0.05, 1.0, 1e-3)],
)
def test_hard_concrete_statistics(
    logit: float, tau: float, gamma: float, zeta: float, bound: float
) -> None:
    torch.manual_seed(0)
    n = 400_000
    m = hard_concrete(
        torch.full((n,), logit), temperature=tau, gamma=gamma, zeta=zeta, noise_bound=bound
    )
    # Closed forms: m = 0 iff s <= -gamma / (zeta - gamma), m = 1 iff s >= (1 - gamma) / (...).
    q0, q1 = -gamma / (zeta - gamma), (1 - gamma) / (zeta - gamma)
    p_zero = _u_at_most(_sigmoid(tau * _logit(q0) - logit), bound)
    p_one = 0.0 if q1 >= 1 else 1 - _u_at_most(_sigmoid(tau * _logit(q1) - logit), bound)
    assert float((m == 0).double().mean()) == pytest.approx(p_zero, abs=5e-3)
    assert float((m == 1).double().mean()) == pytest.approx(p_one, abs=5e-3)
    # The continuous part against a midpoint quadrature of the defining formula over u.
    u = bound + (1 - 2 * bound) * (torch.arange(2_000_000, dtype=torch.float64) + 0.5) / 2e6
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logit) / tau)
    exact = (s * (zeta - gamma) + gamma).clamp(0, 1)
    inner = exact[(exact > 0) & (exact < 1)]
    sampled = m[(m > 0) & (m < 1)].double()
    assert float(sampled.mean()) == pytest.approx(float(inner.mean()), abs=5e-3)
    assert float(m.double().mean()) == pytest.approx(float(exact.mean()), abs=5e-3)


def test_hard_concrete_eval_and_straight_through() -> None:
    logits = torch.tensor([-3.0, -0.2, 0.0, 0.4, 3.0])
    expected = (torch.sigmoid(logits) * 1.2 - 0.1).clamp(0, 1)
    got = hard_concrete(logits, sample=False, gamma=-0.1, zeta=1.1)
    torch.testing.assert_close(got, expected)
    leaf = torch.randn(200, requires_grad=True)
    torch.manual_seed(3)
    hard = hard_concrete(leaf, hard=True)
    torch.manual_seed(3)
    soft = hard_concrete(leaf, hard=False)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(hard.detach(), (soft.detach() > 0.5).float())
    (grad_hard,) = torch.autograd.grad(hard.sum(), leaf)
    (grad_soft,) = torch.autograd.grad(soft.sum(), leaf)
    torch.testing.assert_close(grad_hard, grad_soft)
    with pytest.raises(ValueError, match="gamma"):
        hard_concrete(logits, gamma=0.1)


def test_view_is_scale_times_mask_times_x_and_keeps_nan() -> None:
    method = _method(hard_mask=False)
    x = _x()
    torch.manual_seed(5)
    view, keep, mask = method.augment(x)
    keep_logits, scale = method.augmenter(x)
    torch.testing.assert_close(keep, torch.sigmoid(keep_logits))
    torch.testing.assert_close(view, scale * mask * x, equal_nan=True)
    assert torch.equal(torch.isnan(view), torch.isnan(x))
    assert ((scale > 0) & (scale < 1)).all() and ((mask >= 0) & (mask <= 1)).all()
    view.nan_to_num(0).sum().backward()
    grads = [p.grad for p in method.augmenter.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_a_shared_mask_drops_whole_steps_of_every_channel() -> None:
    method = _method(mask_channels="shared")
    x = _x()
    torch.manual_seed(5)
    view, keep, mask = method.augment(x)
    assert keep.shape == mask.shape == (6, 1, 64)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    dropped = (mask[:, 0] == 0) & ~torch.isnan(x).any(dim=1)
    assert dropped.any() and (view.permute(0, 2, 1)[dropped] == 0).all()
    out = method(Batch(x=x))
    assert torch.isfinite(out["loss"]) and 0 < float(out["kept_fraction"]) < 1


@pytest.mark.parametrize("mask_channels", ["each", "shared"])
def test_fixed_channels_pass_through_and_the_mask_acts_on_the_rest(mask_channels: str) -> None:
    method = _method(fixed_channels=[0], mask_channels=mask_channels, hard_mask=False)
    x = _x()
    torch.manual_seed(5)
    view, keep, mask = method.augment(x)
    keep_logits, scale = method.augmenter(x)
    assert keep.shape == mask.shape == (6, 1, 64) and scale.shape == (6, 1, 64)
    torch.testing.assert_close(keep, torch.sigmoid(keep_logits))
    assert torch.equal(view[:, 0].nan_to_num(7.0), x[:, 0].nan_to_num(7.0))
    torch.testing.assert_close(view[:, 1:], scale * mask * x[:, 1:], equal_nan=True)
    # The sparsity term sees the keep probabilities of the free channel alone.
    out = method(Batch(x=x))
    assert torch.isfinite(out["loss"])
    torch.testing.assert_close(out["keep_probability"], keep.detach().mean())
    view.nan_to_num(0).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in method.augmenter.parameters())


def test_channel_keep_averages_the_observed_steps_and_reads_fixed_channels_as_one() -> None:
    x = _x()
    method = _method()
    keep, scale = method.channel_keep(x)
    logits, g = method.augmenter(x)
    observed = ~torch.isnan(x)
    expected = (torch.sigmoid(logits) * observed).sum(dim=(0, 2)) / observed.sum(dim=(0, 2))
    torch.testing.assert_close(keep, expected)
    torch.testing.assert_close(scale, (g * observed).sum(dim=(0, 2)) / observed.sum(dim=(0, 2)))
    fixed = _method(fixed_channels=[1])
    keep, scale = fixed.channel_keep(x)
    logits, g = fixed.augmenter(x)
    assert keep[1] == 1.0 and scale[1] == 1.0
    seen = observed[:, :1]
    torch.testing.assert_close(keep[0], (torch.sigmoid(logits) * seen).sum() / seen.sum())


def test_noise_on_the_probability_keeps_the_mask_random() -> None:
    # The authors' code adds the logistic noise to p itself: even at p = 1 the mask keeps only
    # about 71 % of the steps, where the noise on the logit keeps them all.
    x = torch.randn(64, 2, 256, generator=torch.Generator().manual_seed(1))
    kept = {}
    for noise in ("logit", "probability"):
        method = _method(mask_noise=noise)
        with torch.no_grad():
            method.augmenter.keep_head.weight.zero_()
            method.augmenter.keep_head.bias.fill_(10.0)
        torch.manual_seed(3)
        _, keep, mask = method.augment(x)
        assert keep.min() > 0.9999
        kept[noise] = float(mask.detach().mean())
    assert kept["logit"] == 1.0
    # P(m = 1) = P(sigmoid(L + p) > (0.5 - gamma) / (zeta - gamma)) for logistic L, p = 1.
    threshold = (0.5 + 0.05) / 1.05
    expected = _sigmoid(1.0 - _logit(threshold))
    assert kept["probability"] == pytest.approx(expected, abs=0.01)


def test_fixed_channels_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"fixed_channels \[2\] are not channels of this 2"):
        _method(fixed_channels=[2])
    with pytest.raises(ConfigError, match="fixed_channels names every input channel"):
        _method(fixed_channels=[0, 1])


def test_each_loss_reaches_only_its_own_parameters() -> None:
    method = _method()
    out = method(Batch(x=_x()))
    assert {"encoder_loss", "augmenter_loss", "mmd", "kept_fraction"} <= set(out)
    torch.testing.assert_close(out["loss"], out["encoder_loss"] + out["augmenter_loss"])
    encoder = [p for p in method.encoder.parameters()]
    augmenter = [p for p in method.augmenter.parameters()]
    to_augmenter = torch.autograd.grad(
        out["encoder_loss"], augmenter, retain_graph=True, allow_unused=True
    )
    to_encoder = torch.autograd.grad(
        out["augmenter_loss"], encoder, retain_graph=True, allow_unused=True
    )
    assert all(g is None for g in to_augmenter) and all(g is None for g in to_encoder)
    from_augmenter = torch.autograd.grad(out["augmenter_loss"], augmenter, retain_graph=True)
    from_encoder = torch.autograd.grad(out["encoder_loss"], encoder)
    assert all(torch.isfinite(g).all() for g in (*from_augmenter, *from_encoder))
    assert any(g.abs().sum() > 0 for g in from_augmenter)
    assert method.encoder.training  # restored after the augmenter's eval-mode pass


def _step(method: AutoTCL, optimizer: torch.optim.Optimizer, batch: Batch, step: int) -> dict:
    optimizer.zero_grad(set_to_none=True)
    out = method(batch)
    out["loss"].backward()
    optimizer.step()
    method.after_optimizer_step(step + 1, 10)
    return out


def test_alternating_updates_and_the_swa_encoder() -> None:
    method = _method(ratio_step=2)
    groups = optimizer_groups(method)
    assert [g["name"] for g in groups] == ["encoder", "augmenter"]
    assert groups[1]["lr"] == 0.01 and not any(
        p.requires_grad for p in method.swa_encoder.parameters()
    )  # type: ignore[union-attr]
    optimizer = torch.optim.AdamW(groups, lr=1e-2)
    batch = Batch(x=_x())
    for step in range(4):
        enc_before = [p.detach().clone() for p in method.encoder.parameters()]
        aug_before = [p.detach().clone() for p in method.augmenter.parameters()]
        out = _step(method, optimizer, batch, step)
        assert torch.isfinite(out["loss"])
        assert ("augmenter_loss" in out) == (step % 2 == 0)
        enc_moved = any(
            not torch.equal(a, p)
            for a, p in zip(enc_before, method.encoder.parameters(), strict=True)
        )
        aug_moved = any(
            not torch.equal(a, p)
            for a, p in zip(aug_before, method.augmenter.parameters(), strict=True)
        )
        assert enc_moved and aug_moved == (step % 2 == 0)
    averaged = method.inference_encoder()
    assert averaged is not method.encoder
    assert any(
        not torch.allclose(a, b)
        for a, b in zip(averaged.parameters(), method.encoder.parameters(), strict=True)
    )


def test_eval_forward_and_hierarchical_variant() -> None:
    method = _method().eval()
    batch = Batch(x=_x())
    first, second = method(batch), method(batch)
    assert "augmenter_loss" not in first
    torch.testing.assert_close(first["loss"], second["loss"])
    hierarchical = _method(encoder_loss="hierarchical")
    assert torch.isfinite(hierarchical(batch)["loss"])


def test_trains_in_the_engine_with_two_parameter_groups(tmp_path: Path) -> None:
    method = _method(ratio_step=2)
    module = PretrainModule(method, lr=1e-3, weight_decay=0.05, total_steps=3)
    optimizer = module.configure_optimizers()["optimizer"]
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs[1] / lrs[0] == pytest.approx(0.01 / 1e-3)
    data = [{"x": row} for row in _x(8)]
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    before = [p.detach().clone() for p in method.augmenter.parameters()]
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, loader)
    assert method.iteration == 3
    assert any(
        not torch.equal(a, p) for a, p in zip(before, method.augmenter.parameters(), strict=True)
    )


def test_works_with_a_tsai_encoder() -> None:
    pytest.importorskip("tsai", reason="the tsai backbones need the timeseries extra")
    torch.manual_seed(0)
    encoder = build_encoder("resnet_plus", spatial_dims=1, in_channels=2, nf=4)
    method = AutoTCL(encoder, SMALL)
    optimizer = torch.optim.AdamW(optimizer_groups(method), lr=1e-3)
    out = _step(method, optimizer, Batch(x=_x()), 0)
    assert torch.isfinite(out["loss"]) and "augmenter_loss" in out


def test_registry_and_errors() -> None:
    assert METHODS.get("autotcl") is AutoTCL and AutoTCL.encoder_output == "sequence"
    with pytest.raises(ConfigError, match="pretrain.method.ratio_step"):
        _method(ratio_step=0)
    with pytest.raises(ConfigError, match="pretrain.method.encoder_loss"):
        _method(encoder_loss="triplet")
    card = _method().card()
    assert card["name"] == "autotcl" and card["keep_threshold"] == 0.4


def _sinusoids(step: int, b: int = 8, t: int = 96) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    freq = torch.rand(b, 2, 1, generator=g) * 0.3 + 0.05
    return torch.sin(freq * torch.arange(t)) + 0.3 * torch.randn(b, 2, t, generator=g)


def _train(steps: int, **config: object) -> dict[str, float]:
    method = _method(**config)
    optimizer = torch.optim.AdamW(optimizer_groups(method), lr=1e-3)
    for step in range(steps):
        out = _step(method, optimizer, Batch(x=_sinusoids(step)), step)
    return {k: float(out[k].detach()) for k in ("keep_probability", "kept_fraction", "mmd")}


def test_the_augmenter_does_not_collapse_to_the_identity() -> None:
    # Found in the ETTh2 runs: with the authors' sparsity weight 1e-3 the MMD term drove every keep
    # probability to 1 (v = x, MMD 0) within a few steps; the default weight must hold the
    # hinge's constraint mean p <= keep_threshold.
    collapsed = _train(30, sparsity_weight=1e-3)
    assert collapsed["keep_probability"] > 0.99 and collapsed["mmd"] < 1e-3
    held = _train(30)
    assert held["keep_probability"] < 0.8 and held["kept_fraction"] < 0.8
    assert held["mmd"] > 0.1
    # Above 2 * kernel_num / (1 - threshold) the hinge holds the constraint itself.
    strict = _train(30, sparsity_weight=20.0)
    assert strict["keep_probability"] < 0.5 and strict["kept_fraction"] < 0.5


def _constant_keep(method: AutoTCL, logits: list[float]) -> None:
    """Make the augmenter's keep logit of channel c the constant logits[c] at every step."""
    with torch.no_grad():
        method.augmenter.keep_head.weight.zero_()
        method.augmenter.keep_head.bias.copy_(torch.tensor(logits))


def _entropy_bits(q: float) -> float:
    return -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def test_the_penalties_against_a_saturating_p_enter_the_augmenter_loss() -> None:
    logits = [-3.0, 0.5]  # mean p 0.335 < keep_threshold: the sparsity hinge is 0
    p = [_sigmoid(v) for v in logits]
    weights = {"entropy_weight": 3.0, "channel_keep_weight": 7.0}
    on = _method(entropy_floor=0.9, min_channel_keep=0.2, **weights)
    off = _method(**weights)  # floors at 0 (the defaults): the weights change nothing
    for method in (on, off):
        _constant_keep(method, logits)
    x = _x()
    torch.manual_seed(4)
    got = on(Batch(x=x))
    torch.manual_seed(4)
    base = off(Batch(x=x))
    entropy = max(0.9 - sum(_entropy_bits(q) for q in p) / 2, 0.0)
    shortfall = max(0.2 - p[0], 0.0) + max(0.2 - p[1], 0.0)
    assert entropy > 0.1 and shortfall > 0.1  # both hinges active
    assert float(got["entropy_penalty"]) == pytest.approx(entropy, rel=1e-5)
    assert float(got["channel_keep_penalty"]) == pytest.approx(shortfall, rel=1e-5)
    assert "entropy_penalty" not in base and "channel_keep_penalty" not in base
    # p is constant in time (smoothness 0) and below the threshold: L_aug = MMD + penalties.
    torch.testing.assert_close(base["augmenter_loss"], base["mmd"])
    torch.testing.assert_close(got["mmd"], base["mmd"])
    expected = float(base["mmd"]) + 3.0 * entropy + 7.0 * shortfall
    assert float(got["augmenter_loss"]) == pytest.approx(expected, rel=1e-5)
    # The penalties raise the dropped channel's p and pull the kept one towards 1/2.
    bias = on.augmenter.keep_head.bias
    (with_penalties,) = torch.autograd.grad(got["augmenter_loss"], bias)
    (without,) = torch.autograd.grad(base["augmenter_loss"], off.augmenter.keep_head.bias)
    push = with_penalties - without
    assert push[0] < 0 < push[1]
    mean_entropy = sum(_entropy_bits(q) for q in p) / 2
    assert float(got["keep_entropy"]) == pytest.approx(mean_entropy, rel=1e-5)
    assert float(got["channel_keep_min"]) == pytest.approx(p[0], rel=1e-5)
    assert float(got["undecided_fraction"]) == pytest.approx(0.5)  # p0 = 0.047 is decided


def test_a_channel_minimum_above_the_keep_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="pretrain.method.min_channel_keep.*above keep_threshold"):
        _method(min_channel_keep=0.5)
    with pytest.raises(ConfigError, match="pretrain.method.entropy_floor"):
        _method(entropy_floor=1.5)
    with pytest.raises(ConfigError, match="pretrain.method.mmd_reference"):
        _method(mmd_reference="average")
    assert _method(min_channel_keep=0.5, keep_threshold=0.6).config.min_channel_keep == 0.5


def test_each_augmenter_step_leaves_one_record() -> None:
    method = _method(ratio_step=2, fixed_channels=[0])
    optimizer = torch.optim.AdamW(optimizer_groups(method), lr=1e-3)
    batch = Batch(x=_x())
    assert method.training_record() is None
    records = []
    for step in range(4):
        _step(method, optimizer, batch, step)
        records.append(method.training_record())
        assert method.training_record() is None  # handed out once
    assert [r is None for r in records] == [False, True, False, True]
    first = records[0]
    assert first is not None and first["step"] == 0
    assert records[2] is not None and records[2]["step"] == 2
    assert set(first) == {"step", "keep", "entropy", "undecided", "channel_keep"}
    assert first["channel_keep"][0] == 1.0 and 0.0 < first["channel_keep"][1] < 1.0


def _fresh(encoder_name: str = "ts2vec", seed: int = 0, **config: object) -> AutoTCL:
    torch.manual_seed(seed)
    if encoder_name == "ts2vec":
        encoder = build_encoder(
            "ts2vec", spatial_dims=1, in_channels=2, hidden_dim=8, output_dim=12, depth=2
        )
    else:
        pytest.importorskip("tsai", reason="the tsai backbones need the timeseries extra")
        encoder = build_encoder(encoder_name, spatial_dims=1, in_channels=2, nf=4)
    return AutoTCL(encoder, {**SMALL, "mmd_reference": "fresh", **config})


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("encoder_name", ["ts2vec", "resnet_plus"])  # resnet_plus: batch norm
def test_the_fresh_reference_gets_no_gradient_and_no_update(encoder_name: str) -> None:
    method = _fresh(encoder_name)
    reference = method.reference_encoder
    assert reference is not None and not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    grouped = {id(p) for g in optimizer_groups(method) for p in g["params"]}
    assert not grouped & {id(p) for p in reference.parameters()}
    before, encoder_before = _state(reference), _state(method.encoder)
    optimizer = torch.optim.AdamW(optimizer_groups(method), lr=1e-2)
    method.train()
    assert not reference.training  # train() leaves it in eval mode (batch-norm statistics)
    for step in range(3):
        out = _step(method, optimizer, Batch(x=_x()), step)
        assert torch.isfinite(out["loss"]) and "augmenter_loss" in out
    assert all(p.grad is None for p in reference.parameters())
    after = _state(reference)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    moved = _state(method.encoder)
    assert any(not torch.equal(encoder_before[k], moved[k]) for k in moved)


def test_the_fresh_reference_is_the_seeded_initialisation() -> None:
    a, b, other = _fresh(seed=5), _fresh(seed=5), _fresh(seed=6)
    ref_a = _state(a.reference_encoder)  # type: ignore[arg-type]
    ref_b = _state(b.reference_encoder)  # type: ignore[arg-type]
    assert all(torch.equal(ref_a[k], ref_b[k]) for k in ref_a)
    ref_other = _state(other.reference_encoder)  # type: ignore[arg-type]
    assert any(not torch.equal(ref_a[k], ref_other[k]) for k in ref_a)
    # Built right after seeding, the encoder starts from those same weights (a run's first
    # phase), and building the reference does not move the global random stream.
    start = _state(a.encoder)
    assert all(torch.equal(ref_a[k], start[k]) for k in ref_a)
    current = _fresh(seed=5, mmd_reference="current")
    draw_current = torch.rand(3)
    fresh = _fresh(seed=5)
    draw_fresh = torch.rand(3)
    assert torch.equal(draw_current, draw_fresh)
    aug_current, aug_fresh = _state(current.augmenter), _state(fresh.augmenter)
    assert all(torch.equal(aug_current[k], aug_fresh[k]) for k in aug_current)


def test_the_mmd_compares_in_the_fresh_reference_not_the_trained_encoder() -> None:
    x = _x()
    mmd = {}
    for reference in ("current", "fresh"):
        method = _fresh(mmd_reference=reference)
        values = []
        for _ in range(2):
            torch.manual_seed(9)
            values.append(method(Batch(x=x))["mmd"])
            with torch.no_grad():  # the encoder learns something between the two passes
                for p in method.encoder.parameters():
                    p.add_(0.3 * torch.randn_like(p))
        mmd[reference] = values
    torch.testing.assert_close(mmd["fresh"][0], mmd["fresh"][1], rtol=0, atol=0)
    assert not torch.allclose(mmd["current"][0], mmd["current"][1])
    # Before the encoder moves, both compare in the same weights.
    torch.testing.assert_close(mmd["fresh"][0], mmd["current"][0])


def _fit(folder: Path, method: AutoTCL, max_steps: int, resume: Path | None = None) -> None:
    loader = torch.utils.data.DataLoader([{"x": row} for row in _x(8)], batch_size=4)
    module = PretrainModule(method, lr=1e-3, weight_decay=0.01, total_steps=4)
    trainer = build_trainer(
        TrainerConfig(progress_bar=False),
        root_dir=folder,
        label="test",
        max_epochs=2,
        max_steps=max_steps,
        checkpoint_every_n_steps=2,
        extra_callbacks=[TrainingRecords(folder / RECORDS_FILE)],
    )
    trainer.fit(module, loader, ckpt_path=resume)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("ratio_step", "augmenter_steps"), [(1, [0, 1, 2, 3]), (3, [0, 3])])
def test_a_resumed_fit_keeps_the_fresh_reference_and_the_records(
    tmp_path: Path, ratio_step: int, augmenter_steps: list[int]
) -> None:
    straight = _fresh(seed=1, ratio_step=ratio_step)
    _fit(tmp_path / "straight", straight, max_steps=4)
    first = _fresh(seed=1, ratio_step=ratio_step)
    _fit(tmp_path / "run", first, max_steps=2)
    checkpoint = last_checkpoint(tmp_path / "run")
    assert checkpoint is not None
    before = [s for s in augmenter_steps if s < 2]
    assert [r["step"] for r in read_records(tmp_path / "run" / RECORDS_FILE)] == before
    # Resumed by a process whose seed would draw another reference: the checkpoint's wins.
    resumed = _fresh(seed=2, ratio_step=ratio_step)
    drawn = _state(resumed.reference_encoder)  # type: ignore[arg-type]
    _fit(tmp_path / "run", resumed, max_steps=4, resume=checkpoint)
    kept = _state(first.reference_encoder)  # type: ignore[arg-type]
    restored = _state(resumed.reference_encoder)  # type: ignore[arg-type]
    assert any(not torch.equal(drawn[k], kept[k]) for k in kept)
    assert all(torch.equal(restored[k], kept[k]) for k in kept)
    # The records go on from the checkpoint's (and so does the augmenter's step count).
    records = read_records(tmp_path / "run" / RECORDS_FILE)
    expected = read_records(tmp_path / "straight" / RECORDS_FILE)
    assert [r["step"] for r in records] == [r["step"] for r in expected] == augmenter_steps
    for got, want in zip(records, expected, strict=True):
        assert got["channel_keep"] == pytest.approx(want["channel_keep"], abs=1e-6)
        assert got["keep"] == pytest.approx(want["keep"], abs=1e-6)
