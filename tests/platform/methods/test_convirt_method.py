"""The image-text methods: ConVIRT's and MoRE's losses are the loss functions on their own
projections, the joint state leaves the encoder out, settings the data decides are refused in
the config, and a few steps pull each image towards its own report."""

from __future__ import annotations

import pytest
import torch

from medssl.platform.batch import Batch
from medssl.platform.encoders import build_encoder
from medssl.platform.errors import ConfigError
from medssl.platform.losses.image_text import convirt_loss, gloria_local_loss, more_loss
from medssl.platform.methods.convirt import ConVIRT, word_positions
from medssl.platform.methods.more import MoRE

TEXT = {"width": 32, "depth": 1, "heads": 2, "dropout": 0.0}
SMALL = {"projection_dim": 16, "hidden_dim": 32, "text_encoder": TEXT}
ECG = {"width": 32, "depth": 1, "heads": 2, "dropout": 0.0}
FACTS = {"vocab_size": 40, "max_tokens": 10}


def _encoder() -> torch.nn.Module:
    return build_encoder(
        "resnet", spatial_dims=2, in_channels=1, depth=10, widen_factor=0.125, no_max_pool=True
    )


def _batch(n: int = 6, seed: int = 0, ecg: bool = False) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 11, (n,), generator=g)
    mask = torch.arange(10)[None, :] < lengths[:, None]
    ids = torch.randint(5, 40, (n, 10), generator=g).masked_fill(~mask, 0)
    ids[:, 0] = 2  # [CLS]
    ids[torch.arange(n), lengths - 1] = 3  # [SEP]
    fields = {"x": torch.rand(n, 1, 32, 32, generator=g), "index": torch.arange(n)}
    fields.update(text=ids, text_mask=mask)
    if ecg:
        fields.update(ecg=torch.randn(n, 2, 200, generator=g), ecg_present=torch.arange(n) % 3 != 1)
    return Batch(fields)


def _convirt(**options: object) -> ConVIRT:
    torch.manual_seed(0)
    return ConVIRT.build(_encoder(), ConVIRT.validate_config({**SMALL, **options}), FACTS)


@pytest.mark.parametrize(("temperature", "image_weight"), [(0.1, 0.75), (0.5, 0.25), (0.07, 1.0)])
def test_convirt_loss_is_the_loss_of_its_projections(temperature: float, image_weight: float) -> None:
    method = _convirt(temperature=temperature, image_weight=image_weight).eval()
    batch = _batch()
    out = method(batch)
    v = method.image_projector(method.encoder.global_features(method.make_view(batch)))
    u = method.text_projector(method.text_encoder(batch["text"], batch["text_mask"]).pooled)
    expected = convirt_loss(v, u, temperature, image_weight)
    assert torch.allclose(out["loss"], expected, atol=1e-6)


def test_local_term_adds_the_gloria_loss_of_words_and_regions() -> None:
    plain = _convirt().eval()
    local = _convirt(local_weight=0.5).eval()
    batch = _batch()
    maps = local.encoder.encode(local.make_view(batch))[0]
    text = local.text_encoder(batch["text"], batch["text_mask"])
    regions = local.region_projector(maps.flatten(2).transpose(1, 2))
    words = local.word_projector(text.tokens)
    term = gloria_local_loss(words, word_positions(batch["text_mask"]), regions)
    assert torch.allclose(local(batch)["loss"], plain(batch)["loss"] + 0.5 * term, atol=1e-5)


def test_word_positions_drop_cls_and_sep() -> None:
    mask = torch.tensor([[True, True, True, True, False], [True, True, False, False, False]])
    assert word_positions(mask).tolist() == [
        [False, True, True, False, False],
        [False, False, False, False, False],
    ]


def test_gradients_reach_both_towers_and_joint_state_leaves_the_encoder_out() -> None:
    method = _convirt()
    method(_batch())["loss"].backward()
    for part in (method.encoder, method.text_encoder, method.image_projector, method.text_projector):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    state = method.joint_state()
    assert state and not any(k.startswith("encoder.") for k in state)
    assert any(k.startswith("text_encoder.") for k in state)


def test_settings_the_tokenizer_decides_are_refused_in_the_config() -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.method\.text_encoder.*vocab_size"):
        ConVIRT.validate_config({"text_encoder": {"vocab_size": 10}})
    with pytest.raises(ConfigError, match=r"pretrain\.method\.text_encoder.*bogus"):
        ConVIRT.validate_config({"text_encoder": {"bogus": 1}})


def test_building_without_report_text_says_how_to_get_it() -> None:
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.text"):
        ConVIRT.build(_encoder(), ConVIRT.validate_config(SMALL), {})
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.ecg"):
        MoRE.build(_encoder(), MoRE.validate_config({**SMALL, "ecg_encoder": ECG}), FACTS)


def test_a_few_steps_pull_each_image_to_its_own_report() -> None:
    method = _convirt(temperature=0.2)
    batch = _batch(8, seed=1)
    optimiser = torch.optim.Adam(method.parameters(), lr=3e-3)
    first = float(method(batch)["loss"].detach())
    for _ in range(30):
        optimiser.zero_grad()
        loss = method(batch)["loss"]
        loss.backward()
        optimiser.step()
    assert float(method(batch)["loss"].detach()) < 0.5 * first


def _more() -> MoRE:
    torch.manual_seed(0)
    config = MoRE.validate_config({**SMALL, "ecg_encoder": {**ECG, "patch_size": 20}})
    return MoRE.build(_encoder(), config, {**FACTS, "ecg_leads": 2})


def test_more_loss_is_the_loss_of_its_projections_with_absent_ecgs_left_out() -> None:
    method = _more().eval()
    batch = _batch(ecg=True)
    out = method(batch)
    v = method.image_projector(method.encoder.global_features(method.make_view(batch)))
    u = method.text_projector(method.text_encoder(batch["text"], batch["text_mask"]).pooled)
    e = method.ecg_projector(method.ecg_encoder.global_features(batch["ecg"]))
    expected = more_loss(u, v, e, 0.1, ecg_present=batch["ecg_present"])
    assert torch.allclose(out["loss"], expected, atol=1e-6)
    assert 0 < int(batch["ecg_present"].sum()) < len(batch["ecg_present"])
    assert {"ecg_pair_similarity", "pair_similarity", "embedding_std"} <= set(out)


def test_more_refuses_the_local_term_and_embeds_ecgs() -> None:
    with pytest.raises(ConfigError, match="local_weight"):
        MoRE.build(
            _encoder(),
            MoRE.validate_config({**SMALL, "ecg_encoder": ECG, "local_weight": 1.0}),
            {**FACTS, "ecg_leads": 2},
        )
    method = _more().eval()
    emb = method.embed_ecgs(torch.randn(3, 2, 200))
    assert emb.shape == (3, 16)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    with pytest.raises(ConfigError, match=r"pretrain\.method\.ecg_encoder"):
        MoRE.validate_config({"ecg_encoder": {"bogus": 1}})
