"""IMLE gradients through solve_qap: the estimator by hand, and toy problems it learns."""

from __future__ import annotations

import pytest
import torch
from test_qap import lvmmed_like

from medssl.platform.solvers import brute_force_qap, hamming_loss, imle_qap
from medssl.platform.solvers import imle as imle_module


def test_gradients_equal_the_formulas() -> None:
    gen = torch.Generator().manual_seed(0)
    unary0, K0 = lvmmed_like(6, 4, gen)
    g = torch.randn(6, 4, 4, generator=gen, dtype=torch.float64)
    lam = 3.0
    unary, K = unary0.clone().requires_grad_(), K0.clone().requires_grad_()
    v = imle_qap(unary, K, lam=lam, noise=False)
    (v * g).sum().backward()
    expected_v = brute_force_qap(unary0, K0)
    v_target = brute_force_qap(unary0 - lam * g, K0)
    torch.testing.assert_close(v.detach(), expected_v)
    torch.testing.assert_close(unary.grad, (expected_v - v_target) / lam)
    a, b = expected_v.flatten(1), v_target.flatten(1)
    outer = a[:, :, None] * a[:, None, :] - b[:, :, None] * b[:, None, :]
    torch.testing.assert_close(K.grad, outer / lam)


def test_exactly_two_solves_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = imle_module.solve_qap

    def counted(*args, **kwargs):
        calls.append(args[0].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(imle_module, "solve_qap", counted)
    unary, K = lvmmed_like(16, 5, torch.Generator().manual_seed(1))
    unary.requires_grad_()
    hamming_loss(imle_qap(unary, K, solver_kwargs={"restarts": 2})).backward()
    assert calls == [16, 16]


def test_half_precision_inputs() -> None:
    unary, K = lvmmed_like(4, 5, torch.Generator().manual_seed(2))
    unary = unary.to(torch.bfloat16).requires_grad_()
    K = K.to(torch.float16).requires_grad_()
    v = imle_qap(unary, K, noise=False)
    assert v.dtype == torch.bfloat16
    hamming_loss(v).backward()
    assert unary.grad is not None and unary.grad.dtype == torch.bfloat16
    assert K.grad is not None and K.grad.dtype == torch.float16


def test_gradient_reaches_K_only_when_asked() -> None:
    unary, K = lvmmed_like(8, 5, torch.Generator().manual_seed(3))
    K.requires_grad_()
    hamming_loss(imle_qap(unary, K, noise=False)).backward()
    assert K.grad is not None and bool(K.grad.abs().sum() > 0)
    assert unary.grad is None


FAST = {"restarts": 4, "iterations": 10}


def train_to_identity(learn_K: bool, noise: bool, steps: int = 40) -> list[float]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    unary0, K0 = lvmmed_like(8, 6, gen, dtype=torch.float32)
    unary = torch.nn.Parameter(torch.rand(8, 6, 6, generator=gen))
    if learn_K:
        unary = unary.detach()
        K = torch.nn.Parameter(K0.clone())
        params = [K]
    else:
        K = K0
        params = [unary]
    optimiser = torch.optim.Adam(params, lr=0.15)
    noise_gen = torch.Generator().manual_seed(5)
    losses = []
    for _ in range(steps):
        v = imle_qap(
            unary, K, noise=noise, noise_scale=0.5, generator=noise_gen, solver_kwargs=FAST
        )
        loss = hamming_loss(v)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("learn_K", [False, True])
def test_adam_drives_hamming_loss_to_zero(learn_K: bool, noise: bool) -> None:
    losses = train_to_identity(learn_K, noise)
    assert losses[0] > 0
    assert min(losses) == 0.0
    assert sum(losses[-10:]) / 10 < 0.1 * losses[0]


def test_hamming_loss_values() -> None:
    v = torch.eye(3).expand(2, 3, 3)
    assert float(hamming_loss(v)) == 0.0
    swapped = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    assert float(hamming_loss(swapped)) == 4.0
    assert float(hamming_loss(swapped, swapped[0])) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam": 0.0}, "lam must be > 0"),
        ({"noise_scale": -1.0}, "noise_scale must be >= 0"),
        ({"solver_kwargs": {"restart": 2}}, r"unknown solver option\(s\) \['restart'\]"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        imle_qap(torch.zeros(1, 2, 2), torch.zeros(1, 4, 4), **kwargs)


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"K must be \(B, N\*N, N\*N\)"):
        imle_qap(torch.zeros(1, 2, 2), torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="v must be a"):
        hamming_loss(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="target must be"):
        hamming_loss(torch.zeros(2, 3, 3), torch.zeros(2, 2))
