"""The text transformer: shapes and pooling, padding invariance, a row of padding only,
gradients, config errors naming ``text_encoder.<key>``, input errors, the init_kwargs round trip
and determinism."""

from __future__ import annotations

import pytest
import torch

from medssl.platform.encoders.text import TextOutput, TextTransformer, pre_ln_transformer
from medssl.platform.errors import ConfigError

SMALL = {"vocab_size": 50, "max_tokens": 24, "width": 16, "depth": 2, "heads": 2}


def _model(**options: object) -> TextTransformer:
    torch.manual_seed(0)
    return TextTransformer(**{**SMALL, **options}).eval()  # type: ignore[arg-type]


def _ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Ids in [1, vocab) so none is the pad id 0."""
    return torch.randint(1, 50, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_architecture_and_default_size() -> None:
    model = TextTransformer(vocab_size=8000)
    layer = model.blocks.layers[0]
    assert model.feature_dim == 256 and len(model.blocks.layers) == 4
    assert layer.norm_first and layer.self_attn.batch_first and layer.self_attn.num_heads == 4
    assert layer.linear1.out_features == 1024
    assert model.position.shape == (1, 128, 256)
    # 256 * 8000 token embeddings + 128 * 256 positions + 4 * 789,760 per layer + final norm.
    assert sum(p.numel() for p in model.parameters()) == 5_240_320


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize(("batch", "length"), [(1, 1), (3, 7), (2, 24)])
def test_shapes(pool: str, batch: int, length: int) -> None:
    out = _model(pool=pool)(_ids(batch, length))
    assert isinstance(out, TextOutput)
    assert out.pooled.shape == (batch, 16) and out.tokens.shape == (batch, length, 16)
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()


def test_pooling_reads_cls_or_the_mean_of_real_tokens() -> None:
    ids = _ids(2, 9)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 5:] = False
    cls, mean = _model(pool="cls"), _model(pool="mean")
    out = cls(ids, mask)
    torch.testing.assert_close(out.pooled, out.tokens[:, 0])
    out = mean(ids, mask)
    torch.testing.assert_close(out.pooled[0], out.tokens[0].mean(dim=0))
    torch.testing.assert_close(out.pooled[1], out.tokens[1, :5].mean(dim=0))
    assert not out.tokens[1, 5:].any()


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_appending_padding_leaves_real_tokens_unchanged(pool: str) -> None:
    # Equal up to float rounding (~1e-6): attention sums over a longer row in another order.
    model = _model(pool=pool)
    ids = _ids(3, 6)
    padded = torch.cat([ids, torch.zeros(3, 10, dtype=ids.dtype)], dim=1)
    short, long = model(ids), model(padded)
    torch.testing.assert_close(long.pooled, short.pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(long.tokens[:, :6], short.tokens, rtol=1e-5, atol=1e-5)
    # What the padding holds does not matter either, only the mask.
    noisy = torch.cat([ids, _ids(3, 10, seed=1)], dim=1)
    mask = torch.arange(16)[None].expand(3, 16) < 6
    torch.testing.assert_close(model(noisy, mask).pooled, short.pooled, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_a_row_of_padding_only_gives_zeros_not_nan(pool: str) -> None:
    model = _model(pool=pool)
    ids = _ids(2, 5)
    ids[1] = 0
    out = model(ids)
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    assert not out.pooled[1].any() and not out.tokens[1].any()
    torch.testing.assert_close(out.pooled[0], model(ids[:1]).pooled[0], rtol=1e-5, atol=1e-5)
    out.pooled.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gradient_reaches_the_embeddings_and_every_layer() -> None:
    model = _model(pool="mean").train()
    ids = _ids(4, 8)
    out = model(ids)
    (out.pooled.square().sum() + out.tokens.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    used = ids.unique()
    assert model.token.weight.grad[used].abs().sum(dim=1).all()
    # Tokens that never occur get no gradient; positions beyond L neither.
    unused = torch.ones(50, dtype=torch.bool)
    unused[used] = False
    assert not model.token.weight.grad[unused].any()
    assert not model.position.grad[:, 8:].any()


def test_init_kwargs_round_trip_and_determinism() -> None:
    model = _model(pool="mean", dropout=0.0, mlp_ratio=2.5)
    kwargs = model.init_kwargs
    assert kwargs == {**SMALL, "mlp_ratio": 2.5, "dropout": 0.0, "pool": "mean", "pad_id": 0}
    rebuilt = TextTransformer(**kwargs)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert {n: p.shape for n, p in rebuilt.named_parameters()} == shapes
    assert TextTransformer(TextTransformer.Config(**kwargs)).init_kwargs == kwargs
    # The same seed builds the same network, so the same output.
    again = _model(pool="mean", dropout=0.0, mlp_ratio=2.5)
    for (name, p), q in zip(model.named_parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q), name
    ids = _ids(2, 10)
    assert torch.equal(model(ids).pooled, again(ids).pooled)
    assert torch.equal(model(ids).pooled, model(ids).pooled)


def test_dropout_acts_only_in_training() -> None:
    model = _model(dropout=0.5).train()
    ids = _ids(2, 10)
    torch.manual_seed(1)
    assert not torch.equal(model(ids).pooled, model(ids).pooled)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"vocab_size": None}, "text_encoder.vocab_size: encoder 'text_transformer' needs"),
        ({"vocab_size": 4}, r"text_encoder.vocab_size: .*greater than or equal to 8, got 4"),
        ({"width": 30, "heads": 4}, r"text_encoder.heads: heads must divide width=30, got 4"),
        ({"pool": "max"}, r"text_encoder.pool: .*'cls' or 'mean', got 'max'"),
        ({"dropout": 1.0}, r"text_encoder.dropout: .*less than 1, got 1.0"),
        ({"mlp_ratio": 0.0}, r"text_encoder.mlp_ratio: .*greater than 0, got 0.0"),
        ({"pad_id": 50}, r"text_encoder.pad_id: pad_id must be below vocab_size=50, got 50"),
        ({"depth": True}, r"text_encoder.depth: .*valid integer, got True"),
        ({"layers": 2}, "text_encoder.layers: encoder 'text_transformer' has no such option"),
    ],
)
def test_config_errors_name_the_key(options: dict, match: str) -> None:
    settings = {k: v for k, v in {**SMALL, **options}.items() if v is not None}
    with pytest.raises(ConfigError, match=match):
        TextTransformer(**settings)
    with pytest.raises(ConfigError, match=match):
        TextTransformer.validate_config(settings)


def test_config_and_keywords_together_are_refused() -> None:
    with pytest.raises(TypeError, match="as a Config or as keywords, not both"):
        TextTransformer(TextTransformer.Config(vocab_size=10), width=8)


def test_bad_inputs_are_refused_with_both_shapes() -> None:
    model = _model()
    ids = _ids(2, 6)
    with pytest.raises(
        ValueError, match=r"at most \(B, 24\) tokens \(max_tokens\), got ids \(2, 25\)"
    ):
        model(_ids(2, 25))
    with pytest.raises(ValueError, match=r"mask of the ids' shape \(2, 6\), got \(2, 5\)"):
        model(ids, torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"got \(2, 6\) \(torch.int64\)"):
        model(ids, torch.ones(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 50\), got min id \d+, max id 50; check"):
        model(torch.cat([ids, torch.full((2, 1), 50)], dim=1))
    with pytest.raises(ValueError, match=r"got min id -1, max id \d+"):
        model(torch.cat([ids, torch.full((2, 1), -1)], dim=1))
    with pytest.raises(ValueError, match=r"expects ids \(B, L\) with L >= 1, got \(6,\)"):
        model(ids[0])
    with pytest.raises(ValueError, match="integer token ids, got dtype torch.float32"):
        model(ids.float())
    left_padded = torch.cat([torch.zeros(2, 2, dtype=ids.dtype), ids], dim=1)
    with pytest.raises(ValueError, match=r"rows \[0, 1\] are padding there; put \[CLS\] first"):
        model(left_padded)
    assert torch.isfinite(_model(pool="mean")(left_padded).pooled).all()


def test_pre_ln_transformer_normalises_before_each_sublayer() -> None:
    torch.manual_seed(0)
    stack = pre_ln_transformer(8, 1, 2, 2.0, 0.0).eval()
    layer = stack.layers[0]
    x = torch.randn(2, 5, 8)
    attended = x + layer.self_attn(*[layer.norm1(x)] * 3, need_weights=False)[0]
    hidden = torch.nn.functional.gelu(layer.linear1(layer.norm2(attended)))
    torch.testing.assert_close(stack(x), attended + layer.linear2(hidden))
