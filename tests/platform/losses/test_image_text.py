"""ConVIRT, MoRE and GLoRIA's local loss against slow float64 loop references: values,
gradients, missing ECGs, padded words, rank-partitioned keys, permutations and bad arguments."""

from __future__ import annotations

import pytest
import torch

from medssl.platform.losses import convirt_loss, gloria_local_loss, more_loss

SIZES = [1, 3, 8]
TEMPERATURES = [0.05, 0.1, 0.5]
WEIGHTS = [0.0, 0.25, 0.75, 1.0]


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(_unit(a), _unit(b))


def reference_one_way(
    queries: torch.Tensor, keys: torch.Tensor, tau: float, rows: list[int]
) -> torch.Tensor:
    """mean over i in rows of -s(q_i, k_i) + log sum_{j in rows} exp s(q_i, k_j), in loops."""
    losses = []
    for i in rows:
        denominator = sum(torch.exp(_cos(queries[i], keys[j]) / tau) for j in rows)
        losses.append(-_cos(queries[i], keys[i]) / tau + torch.log(denominator))
    return torch.stack(losses).mean()


def reference_convirt(image: torch.Tensor, text: torch.Tensor, tau: float, lam: float):
    rows = list(range(image.shape[0]))
    return lam * reference_one_way(image, text, tau, rows) + (1 - lam) * reference_one_way(
        text, image, tau, rows
    )


def reference_more(text, image, ecg, tau: float, present: list[bool]) -> torch.Tensor:
    """The two symmetric terms, the ECG one on the rows with an ECG only (skipped if none)."""
    rows = list(range(text.shape[0]))
    text_image = 0.5 * (
        reference_one_way(text, image, tau, rows) + reference_one_way(image, text, tau, rows)
    )
    with_ecg = [i for i in rows if present[i]]
    if not with_ecg:
        return text_image
    text_ecg = 0.5 * (
        reference_one_way(text, ecg, tau, with_ecg) + reference_one_way(ecg, text, tau, with_ecg)
    )
    return 0.5 * (text_image + text_ecg)


def reference_gloria(words, word_mask, regions, taus) -> torch.Tensor:
    """Z(i, j) word by word and region by region, then the symmetric cross-entropy over the
    pairs whose report has a word."""
    tau1, tau2, tau3 = taus
    pairs = [b for b in range(words.shape[0]) if bool(word_mask[b].any())]
    z = {}
    for i in pairs:
        for j in pairs:
            terms = []
            for w in range(words.shape[1]):
                if not word_mask[j, w]:
                    continue
                weights = [torch.exp(tau1 * _cos(words[j, w], r)) for r in regions[i]]
                total = sum(weights)
                context = sum(a / total * r for a, r in zip(weights, regions[i], strict=True))
                terms.append(torch.exp(tau2 * _cos(words[j, w], context)))
            z[i, j] = torch.log(sum(terms)) / tau2
    if not pairs:
        return torch.zeros((), dtype=torch.float64)
    losses = []
    for a in pairs:
        image_to_report = torch.log(sum(torch.exp(tau3 * z[a, j]) for j in pairs))
        report_to_image = torch.log(sum(torch.exp(tau3 * z[i, a]) for i in pairs))
        losses.append(-tau3 * z[a, a] + image_to_report)
        losses.append(-tau3 * z[a, a] + report_to_image)
    return torch.stack(losses).mean()


def _embeddings(n: int, batch: int, dim: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    return [
        (base + torch.randn(batch, dim, generator=gen, dtype=torch.float64)).requires_grad_(True)
        for _ in range(n)
    ]


def _assert_same_value_and_gradient(got, expected, inputs) -> None:
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    got_grads = torch.autograd.grad(got, inputs, allow_unused=True)
    expected_grads = torch.autograd.grad(expected, inputs, allow_unused=True)
    for g, e in zip(got_grads, expected_grads, strict=True):
        e = torch.zeros_like(g) if e is None else e
        torch.testing.assert_close(g, e, atol=1e-9, rtol=1e-7)


# ----------------------------------------------------------------------------- ConVIRT


@pytest.mark.parametrize("batch", SIZES)
@pytest.mark.parametrize("tau", TEMPERATURES)
@pytest.mark.parametrize("lam", WEIGHTS)
def test_convirt_matches_loop_reference(batch: int, tau: float, lam: float) -> None:
    image, text = _embeddings(2, batch, 6, seed=batch * 100 + int(tau * 100))
    got = convirt_loss(image, text, tau, lam)
    assert got.dtype == torch.float64 and got.ndim == 0
    _assert_same_value_and_gradient(got, reference_convirt(image, text, tau, lam), (image, text))


def test_convirt_has_a_gradient_and_prefers_aligned_pairs() -> None:
    image, text = _embeddings(2, 8, 16, seed=3)
    loss = convirt_loss(image.float(), text.float())
    loss.backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    assert float(image.grad.abs().sum()) > 0 and float(text.grad.abs().sum()) > 0
    z = torch.randn(8, 16)
    assert float(convirt_loss(z, z)) < float(convirt_loss(z, torch.randn(8, 16)))


def test_convirt_rank_partitioned_loss_and_gradient_equal_the_global_ones() -> None:
    """Each 'rank' holds 4 pairs and contrasts them with all 8 gathered keys at its offset."""
    image, text = _embeddings(2, 8, 5, seed=11)
    whole = convirt_loss(image, text, 0.1, 0.75)
    split = torch.stack(
        [
            convirt_loss(
                image[r * 4 : r * 4 + 4],
                text[r * 4 : r * 4 + 4],
                0.1,
                0.75,
                gathered=(image, text),
                offset=r * 4,
            )
            for r in range(2)
        ]
    ).mean()
    torch.testing.assert_close(split, whole, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        torch.autograd.grad(split, (image, text)),
        torch.autograd.grad(whole, (image, text)),
        atol=1e-12,
        rtol=0,
    )


# ----------------------------------------------------------------------------- MoRE


@pytest.mark.parametrize("batch", SIZES)
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_more_with_every_ecg_matches_loop_reference(batch: int, tau: float) -> None:
    text, image, ecg = _embeddings(3, batch, 6, seed=batch + int(tau * 1000))
    got = more_loss(text, image, ecg, tau)
    expected = reference_more(text, image, ecg, tau, [True] * batch)
    _assert_same_value_and_gradient(got, expected, (text, image, ecg))


@pytest.mark.parametrize(
    "present",
    [
        [True, False, True],
        [False, True, False],
        [True, True, False, False, True, False, True, True],
    ],
)
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_more_skips_rows_without_an_ecg(present: list[bool], tau: float) -> None:
    text, image, ecg = _embeddings(3, len(present), 6, seed=len(present))
    mask = torch.tensor(present)
    got = more_loss(text, image, ecg, tau, ecg_present=mask)
    expected = reference_more(text, image, ecg, tau, present)
    _assert_same_value_and_gradient(got, expected, (text, image, ecg))
    absent_grad = torch.autograd.grad(more_loss(text, image, ecg, tau, ecg_present=mask), ecg)[0]
    assert float(absent_grad[~mask].abs().sum()) == 0.0


def test_more_ignores_nan_placeholders_of_missing_ecgs() -> None:
    text, image, ecg = _embeddings(3, 4, 6, seed=2)
    mask = torch.tensor([True, False, True, False])
    placeholder = ecg.detach().clone()
    placeholder[~mask] = float("nan")
    placeholder.requires_grad_(True)
    got = more_loss(text, image, placeholder, 0.1, ecg_present=mask)
    got.backward()
    torch.testing.assert_close(got, reference_more(text, image, ecg, 0.1, mask.tolist()))
    for t in (text, image, placeholder):
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("batch", SIZES)
def test_more_without_any_ecg_is_the_text_image_term(batch: int) -> None:
    text, image, ecg = _embeddings(3, batch, 6, seed=7 * batch)
    none = torch.zeros(batch, dtype=torch.bool)
    got = more_loss(text, image, ecg, 0.1, ecg_present=none)
    torch.testing.assert_close(got, convirt_loss(image, text, 0.1, 0.5), atol=1e-12, rtol=0)
    torch.testing.assert_close(got, reference_more(text, image, ecg, 0.1, [False] * batch))


def test_more_rank_partitioned_loss_equals_the_global_one_when_every_ecg_is_there() -> None:
    text, image, ecg = _embeddings(3, 8, 5, seed=13)
    whole = more_loss(text, image, ecg, 0.2)
    parts = [
        more_loss(
            text[r * 4 : r * 4 + 4],
            image[r * 4 : r * 4 + 4],
            ecg[r * 4 : r * 4 + 4],
            0.2,
            gathered=(text, image, ecg),
            offset=r * 4,
        )
        for r in range(2)
    ]
    torch.testing.assert_close(torch.stack(parts).mean(), whole, atol=1e-12, rtol=0)


def test_more_gathered_presence_masks_the_keys() -> None:
    """One 'rank' holding rows 0-3 of 8, with ECGs only in rows 0, 2 and 5 of the 8."""
    text, image, ecg = _embeddings(3, 8, 5, seed=17)
    present = torch.tensor([True, False, True, False, False, True, False, False])
    got = more_loss(
        text[:4],
        image[:4],
        ecg[:4],
        0.1,
        ecg_present=present[:4],
        gathered=(text, image, ecg),
        gathered_ecg_present=present,
        offset=0,
    )
    rows, with_ecg = list(range(4)), [0, 2]
    keys = [0, 2, 5]

    def one_way(q, k, anchors, candidates):
        out = []
        for i in anchors:
            denominator = sum(torch.exp(_cos(q[i], k[j]) / 0.1) for j in candidates)
            out.append(-_cos(q[i], k[i]) / 0.1 + torch.log(denominator))
        return torch.stack(out).mean()

    text_image = 0.5 * (one_way(text, image, rows, range(8)) + one_way(image, text, rows, range(8)))
    text_ecg = 0.5 * (one_way(text, ecg, with_ecg, keys) + one_way(ecg, text, with_ecg, keys))
    torch.testing.assert_close(got, 0.5 * (text_image + text_ecg))


# ----------------------------------------------------------------------------- GLoRIA


def _local_problem(batch: int, words: int, regions: int, dim: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(batch, words, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    r = torch.randn(batch, regions, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(batch, words, generator=gen) < 0.7
    mask[:, 0] = True
    return w, mask, r


@pytest.mark.parametrize("batch", SIZES)
@pytest.mark.parametrize("taus", [(4.0, 5.0, 10.0), (1.0, 0.5, 2.0), (10.0, 2.0, 0.5)])
def test_gloria_local_matches_loop_reference(batch: int, taus) -> None:
    words, mask, regions = _local_problem(batch, 4, 5, 6, seed=batch + int(taus[2] * 10))
    got = gloria_local_loss(words, mask, regions, taus)
    assert got.dtype == torch.float64 and got.ndim == 0
    expected = reference_gloria(words, mask, regions, taus)
    _assert_same_value_and_gradient(got, expected, (words, regions))


def test_gloria_local_ignores_padding_and_reports_without_words() -> None:
    words, mask, regions = _local_problem(4, 5, 3, 6, seed=21)
    mask[2] = False  # report 2 is empty: pair 2 leaves both directions
    mask[0, 3:] = False
    padded = words.detach().clone()
    padded[~mask] = float("nan")
    padded.requires_grad_(True)
    got = gloria_local_loss(padded, mask, regions)
    got.backward()
    expected = reference_gloria(words, mask, regions, (4.0, 5.0, 10.0))
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    assert torch.isfinite(padded.grad).all() and torch.isfinite(regions.grad).all()
    assert float(regions.grad[2].abs().sum()) == 0.0
    empty = gloria_local_loss(words, torch.zeros(4, 5, dtype=torch.bool), regions)
    assert float(empty.detach()) == 0.0


def test_gloria_local_has_a_gradient_in_float32() -> None:
    words, mask, regions = _local_problem(3, 4, 5, 8, seed=5)
    w, r = (
        words.detach().float().requires_grad_(True),
        regions.detach().float().requires_grad_(True),
    )
    loss = gloria_local_loss(w, mask, r)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(w.grad).all() and float(w.grad.abs().sum()) > 0
    assert torch.isfinite(r.grad).all() and float(r.grad.abs().sum()) > 0


# ----------------------------------------------------------------------------- shared


def test_losses_are_invariant_to_permuting_the_batch() -> None:
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    text, image, ecg = (t.detach() for t in _embeddings(3, 6, 5, seed=23))
    present = torch.tensor([True, False, True, True, False, True])
    torch.testing.assert_close(
        convirt_loss(image[perm], text[perm]), convirt_loss(image, text), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        more_loss(text[perm], image[perm], ecg[perm], ecg_present=present[perm]),
        more_loss(text, image, ecg, ecg_present=present),
        atol=1e-12,
        rtol=0,
    )
    words, mask, regions = (
        t.detach() if t.dtype != torch.bool else t for t in _local_problem(6, 4, 5, 6, seed=29)
    )
    torch.testing.assert_close(
        gloria_local_loss(words[perm], mask[perm], regions[perm]),
        gloria_local_loss(words, mask, regions),
        atol=1e-12,
        rtol=0,
    )


def test_bad_arguments_raise_with_the_value() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"temperature must be > 0, got 0\.0"):
        convirt_loss(z, z, 0.0)
    with pytest.raises(ValueError, match=r"image_weight must be in \[0, 1\], got 1\.5"):
        convirt_loss(z, z, 0.1, 1.5)
    with pytest.raises(ValueError, match=r"\(4, 3\), text \(3, 3\)"):
        convirt_loss(z, torch.randn(3, 3))
    with pytest.raises(ValueError, match="gathered keys"):
        convirt_loss(z, z, gathered=(torch.randn(8, 3), torch.randn(8, 4)))
    with pytest.raises(ValueError, match="offset 6"):
        convirt_loss(z, z, gathered=(torch.randn(8, 3), torch.randn(8, 3)), offset=6)
    with pytest.raises(ValueError, match=r"temperature must be > 0, got -1"):
        more_loss(z, z, z, -1)
    with pytest.raises(ValueError, match=r"ecg \(4, 2\)"):
        more_loss(z, z, torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"ecg_present must be a \(4,\) bool mask"):
        more_loss(z, z, z, ecg_present=torch.ones(4))
    with pytest.raises(ValueError, match="gathered_ecg_present"):
        more_loss(z, z, z, ecg_present=torch.ones(4, dtype=torch.bool), gathered=(z, z, z))
    words, mask, regions = (
        torch.randn(2, 3, 4),
        torch.ones(2, 3, dtype=torch.bool),
        torch.randn(2, 5, 4),
    )
    with pytest.raises(ValueError, match=r"tau2 must be > 0, got 0\.0"):
        gloria_local_loss(words, mask, regions, (4.0, 0.0, 10.0))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) and \(2, 5, 3\)"):
        gloria_local_loss(words, mask, torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="word_mask"):
        gloria_local_loss(words, mask.float(), regions)
