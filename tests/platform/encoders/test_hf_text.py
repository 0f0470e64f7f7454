"""The pretrained text tower: a local model folder loaded without any download, LoRA adapters
as the only trained weights (starting from the pretrained model exactly), TextTransformer's
output contract, padding that changes nothing, and errors that name the key to fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from medssl.platform.encoders.hf_text import PretrainedTextEncoder, weights_fingerprint
from medssl.platform.errors import ConfigError


def _tower(folder: Path, **options: object) -> PretrainedTextEncoder:
    torch.manual_seed(0)
    return PretrainedTextEncoder(folder=str(folder), max_tokens=24, vocab_size=60, **options)


def _ids(lengths: list[int], width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] random pieces [SEP] per row, right-padded with 0 to `width`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), width, dtype=torch.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(5, 60, (n,), generator=g)
        ids[row, 0], ids[row, n - 1] = 2, 3
    return ids, ids != 0


def test_lora_trains_only_the_adapters_and_freezes_the_base(tiny_language_model: Path) -> None:
    tower = _tower(tiny_language_model, lora_rank=16, lora_dropout=0.0)
    assert all(m.training for m in tower.modules())  # like any new module, not eval
    trainable = {n: p for n, p in tower.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # query and value of 2 layers, each A (16 x 32) and B (32 x 16).
    assert sum(p.numel() for p in trainable.values()) == 2 * 2 * 2 * 16 * 32
    # What a run saves of the tower (its state less frozen_keys) is the adapters exactly.
    assert {f"model.{k}" for k in tower.model.state_dict()} - tower.frozen_keys == set(trainable)
    base = {n: p.detach().clone() for n, p in tower.named_parameters() if not p.requires_grad}
    ids, mask = _ids([6, 9], 12)
    optimiser = torch.optim.SGD([p for p in tower.parameters() if p.requires_grad], lr=0.1)
    tower(ids, mask).pooled.pow(2).sum().backward()
    optimiser.step()
    assert all(torch.equal(p, base[n]) for n, p in tower.named_parameters() if n in base)


def test_training_starts_from_the_pretrained_model(tiny_language_model: Path) -> None:
    plain = _tower(tiny_language_model, lora_rank=0).eval()
    adapted = _tower(tiny_language_model, lora_rank=8).eval()  # B starts at zero
    ids, mask = _ids([7, 4], 10)
    assert torch.allclose(plain(ids, mask).tokens, adapted(ids, mask).tokens, atol=1e-6)
    assert plain.weights_sha256 == adapted.weights_sha256


def test_full_fine_tuning_trains_every_weight_but_the_unused_pooler(
    tiny_language_model: Path,
) -> None:
    tower = _tower(tiny_language_model, lora_rank=0)
    frozen = [n for n, p in tower.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("model.pooler.") for n in frozen)
    assert tower.frozen_keys == frozenset()  # every weight is saved with the run


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_output_shapes_and_padding_leave_real_tokens_unchanged(
    tiny_language_model: Path, pool: str
) -> None:
    tower = _tower(tiny_language_model, pool=pool).eval()
    ids, mask = _ids([5, 8, 3], 8, seed=1)
    out = tower(ids, mask)
    assert out.pooled.shape == (3, 32) and out.tokens.shape == (3, 8, 32)
    assert tower.feature_dim == 32
    assert torch.all(out.tokens[~mask] == 0)
    padded_ids = torch.cat([ids, torch.zeros(3, 11, dtype=torch.int64)], dim=1)
    padded = tower(padded_ids, padded_ids != 0)
    assert torch.allclose(padded.pooled, out.pooled, atol=1e-5)
    assert torch.allclose(padded.tokens[:, :8], out.tokens, atol=1e-5)


def test_the_fingerprint_names_the_weights(tiny_language_model: Path) -> None:
    tower = _tower(tiny_language_model, lora_rank=0)
    before = weights_fingerprint(tower.model)
    assert before == tower.weights_sha256
    with torch.no_grad():
        tower.model.embeddings.word_embeddings.weight[0, 0] += 1e-3
    assert weights_fingerprint(tower.model) != before


def test_a_missing_folder_names_the_data_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.text\.model: .*nowhere.* not a folder"):
        PretrainedTextEncoder(folder=str(tmp_path / "nowhere"), max_tokens=8, vocab_size=8)
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.text\.model: .*no config\.json"):
        PretrainedTextEncoder(folder=str(tmp_path), max_tokens=8, vocab_size=8)


def test_missing_transformers_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # the import now fails
    with pytest.raises(ConfigError, match=r"transformers.*pip install 'medssl\[text-hf\]'"):
        PretrainedTextEncoder(folder=str(tmp_path), max_tokens=8, vocab_size=8)


def test_missing_peft_says_which_extra_to_install_or_how_to_go_without(
    tiny_language_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ConfigError, match=r"lora_rank 16; 0 fine-tunes.*pip install 'medssl\[text-hf\]'"):
        _tower(tiny_language_model)


def test_sizes_the_model_cannot_take_name_the_key(tiny_language_model: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.text\.max_tokens: .*at most 128"):
        PretrainedTextEncoder(folder=str(tiny_language_model), max_tokens=256, vocab_size=60)
    with pytest.raises(ConfigError, match=r"tokenizer has 5000 ids but the model .* embeds only"):
        PretrainedTextEncoder(folder=str(tiny_language_model), max_tokens=16, vocab_size=5000)
    with pytest.raises(ConfigError, match=r"lora_targets: no adapters"):
        _tower(tiny_language_model, lora_targets=["q_proj"])


def test_bad_options_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"text_encoder\.lora_rank"):
        PretrainedTextEncoder.validate_config(
            {"folder": ".", "max_tokens": 8, "vocab_size": 8, "lora_rank": -1}
        )
    with pytest.raises(ConfigError, match=r"text_encoder\.width"):
        PretrainedTextEncoder.validate_config(
            {"folder": ".", "max_tokens": 8, "vocab_size": 8, "width": 64}
        )
