"""ConVIRT and MoRE with a pretrained language model as the text tower: the config says which
tower (refusing options of the other), the data's tokenizer and the tower must belong
together, and the joint state holds the adapters and projectors only, reloading to the same
embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medssl.platform.batch import Batch
from medssl.platform.encoders import build_encoder
from medssl.platform.encoders.hf_text import PretrainedTextEncoder
from medssl.platform.errors import ConfigError
from medssl.platform.methods.convirt import ConVIRT
from medssl.platform.methods.more import MoRE

PRETRAINED = {"model": "pretrained", "lora_rank": 4, "lora_dropout": 0.0}
SMALL = {"projection_dim": 16, "hidden_dim": 32, "text_encoder": PRETRAINED}


def _encoder() -> torch.nn.Module:
    return build_encoder(
        "resnet", spatial_dims=2, in_channels=1, depth=10, widen_factor=0.125, no_max_pool=True
    )


def _facts(folder: Path) -> dict[str, object]:
    return {"vocab_size": 60, "max_tokens": 12, "text_model": str(folder)}


def _convirt(folder: Path, seed: int = 0, **options: object) -> ConVIRT:
    torch.manual_seed(seed)
    return ConVIRT.build(_encoder(), ConVIRT.validate_config({**SMALL, **options}), _facts(folder))


def _batch(n: int = 4) -> Batch:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(4, 13, (n,), generator=g)
    mask = torch.arange(12)[None, :] < lengths[:, None]
    ids = torch.randint(5, 60, (n, 12), generator=g).masked_fill(~mask, 0)
    ids[:, 0], ids[torch.arange(n), lengths - 1] = 2, 3
    return Batch(x=torch.rand(n, 1, 32, 32, generator=g), index=torch.arange(n), text=ids, text_mask=mask)


def test_options_of_the_other_tower_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.method\.text_encoder.*width: not an option of the pretrained"):
        ConVIRT.validate_config({"text_encoder": {"model": "pretrained", "width": 64}})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.text_encoder.*lora_rank: LoRA tunes a pretrained"):
        ConVIRT.validate_config({"text_encoder": {"width": 64, "lora_rank": 16}})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.text_encoder.*model: 'scratch'.*'bert'"):
        ConVIRT.validate_config({"text_encoder": {"model": "bert"}})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.text_encoder.*folder is set by .*text\.model"):
        ConVIRT.validate_config({"text_encoder": {"model": "pretrained", "folder": "x"}})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.text_encoder.*lora_dropout"):
        ConVIRT.validate_config({"text_encoder": {"model": "pretrained", "lora_dropout": 2}})
    ConVIRT.validate_config({"text_encoder": {"model": "scratch", "width": 64, "pool": "mean"}})


def test_the_tower_and_the_data_s_tokenizer_must_belong_together(tiny_language_model: Path) -> None:
    facts = _facts(tiny_language_model)
    with pytest.raises(ConfigError, match=r"text_encoder\.model: 'pretrained' .*text\.model, which is not set"):
        ConVIRT.build(_encoder(), ConVIRT.validate_config(SMALL), {**facts, "text_model": None})
    with pytest.raises(ConfigError, match=r"text_encoder\.model: .*trained from scratch; set"):
        ConVIRT.build(_encoder(), ConVIRT.validate_config({}), facts)


def test_the_joint_state_holds_adapters_and_projectors_and_reloads(
    tiny_language_model: Path,
) -> None:
    trained = _convirt(tiny_language_model)
    assert isinstance(trained.text_encoder, PretrainedTextEncoder)
    optimiser = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimiser.zero_grad()
        trained(_batch())["loss"].backward()
        optimiser.step()
    state = trained.joint_state()
    text_keys = [k for k in state if k.startswith("text_encoder.")]
    assert text_keys and all("lora_" in k for k in text_keys)
    assert any(k.startswith("text_projector.") for k in state)
    assert trained.facts["text_model"] == str(tiny_language_model)

    fresh = _convirt(tiny_language_model, seed=1)
    _, unexpected = fresh.load_state_dict(state, strict=False)
    assert not unexpected
    batch = _batch()
    trained.eval(), fresh.eval()
    with torch.no_grad():
        before = trained.embed_texts(batch["text"], batch["text_mask"])
        after = fresh.embed_texts(batch["text"], batch["text_mask"])
    assert torch.allclose(before, after, atol=1e-6)


def test_full_fine_tuning_saves_the_whole_text_tower(tiny_language_model: Path) -> None:
    method = _convirt(tiny_language_model, text_encoder={"model": "pretrained", "lora_rank": 0})
    state = method.joint_state()
    assert "text_encoder.model.embeddings.word_embeddings.weight" in state


def test_more_takes_the_pretrained_tower_too(tiny_language_model: Path) -> None:
    ecg = {"width": 16, "depth": 1, "heads": 2, "patch_size": 20}
    config = MoRE.validate_config({**SMALL, "ecg_encoder": ecg})
    method = MoRE.build(_encoder(), config, {**_facts(tiny_language_model), "ecg_leads": 2})
    assert isinstance(method.text_encoder, PretrainedTextEncoder)
    assert method.facts["text_model"] == str(tiny_language_model)
