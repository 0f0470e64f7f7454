"""The report WordPiece tokenizer: training, exact [CLS] / [SEP] / [PAD] layout, round trips,
determinism, and saving it to travel with a checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.text import SPECIAL_TOKENS, ReportTokenizer, read_report_archive
from medssl.platform.errors import CheckpointError

CORPUS = [
    "findings: The heart size is normal. The lungs are clear. impression: No acute disease.",
    "findings: Mild cardiomegaly. Small left pleural effusion. impression: Cardiomegaly.",
    "findings: No pneumothorax or pleural effusion. impression: Normal chest.",
    "findings: Calcified granuloma in the right upper lobe. impression: No active disease.",
    "findings: Low lung volumes with bibasilar atelectasis. impression: Atelectasis.",
    "impression: Stable cardiomediastinal silhouette, no focal consolidation.",
    "findings: Degenerative changes of the thoracic spine. impression: No acute process.",
    "findings: Hyperexpanded lungs, consistent with emphysema. impression: Emphysema.",
] * 3


@pytest.fixture(scope="module")
def tok() -> ReportTokenizer:
    return ReportTokenizer.train(CORPUS, vocab_size=200)


def test_special_tokens_have_fixed_ids(tok: ReportTokenizer) -> None:
    assert tok.pad_id == 0
    assert tok.mask_id == 4
    ids, _ = tok.encode([" ".join(SPECIAL_TOKENS)], max_tokens=8)
    assert ids[0].tolist() == [2, 0, 1, 2, 3, 4, 3, 0]
    assert tok.vocab_size <= 200


def test_round_trip_gives_the_normalised_text(tok: ReportTokenizer) -> None:
    assert tok.normalise("The Heart size   is NORMAL.") == "the heart size is normal ."
    texts = [*CORPUS[:8], "Effusion in the upper lobe, no granuloma."]
    ids, mask = tok.encode(texts, max_tokens=64)
    assert mask.sum(axis=1).max() < 64  # nothing was cut
    assert 1 not in ids  # no [UNK]
    for row, text in zip(ids, texts, strict=True):
        assert tok.decode(row) == tok.normalise(text)


def test_unseen_characters_decode_as_unk(tok: ReportTokenizer) -> None:
    ids, _ = tok.encode(["heart \u80ba normal"], max_tokens=8)
    assert 1 in ids[0]
    assert tok.decode(ids[0]) == "heart [UNK] normal"


def test_lowercase_false_keeps_case() -> None:
    cased = ReportTokenizer.train(CORPUS, vocab_size=200, lowercase=False)
    assert cased.normalise("The Heart") == "The Heart"
    ids, _ = cased.encode(["The Heart"], max_tokens=8)
    assert cased.decode(ids[0]) == "The Heart"


def test_padding_is_exact(tok: ReportTokenizer) -> None:
    full, _ = tok.encode(["No acute disease."], max_tokens=32)
    n = int((full[0] != 0).sum())  # [CLS] no acute disease . [SEP]
    ids, mask = tok.encode(["No acute disease.", ""], max_tokens=n + 3)
    assert ids.shape == mask.shape == (2, n + 3)
    assert ids.dtype == np.int64 and mask.dtype == np.bool_
    assert ids[0].tolist() == [*full[0, :n].tolist(), 0, 0, 0]
    assert ids[0, 0] == 2 and ids[0, n - 1] == 3
    assert mask[0].tolist() == [True] * n + [False] * 3
    assert ids[1].tolist() == [2, 3] + [0] * (n + 1)
    assert mask[1].tolist() == [True, True] + [False] * (n + 1)


def test_truncation_keeps_sep_last(tok: ReportTokenizer) -> None:
    text = CORPUS[0]
    full, _ = tok.encode([text], max_tokens=64)
    ids, mask = tok.encode([text], max_tokens=5)
    assert ids[0].tolist() == [2, *full[0, 1:4].tolist(), 3]
    assert mask.all()
    two, _ = tok.encode([text], max_tokens=2)
    assert two.tolist() == [[2, 3]]


def test_encode_edge_cases(tok: ReportTokenizer) -> None:
    ids, mask = tok.encode([], max_tokens=6)
    assert ids.shape == mask.shape == (0, 6)
    with pytest.raises(ValueError, match=r"max_tokens must be at least 2 .*, got 1"):
        tok.encode(["heart"], max_tokens=1)
    with pytest.raises(ValueError, match="list of texts"):
        tok.encode("heart", max_tokens=6)  # type: ignore[arg-type]


def test_training_is_deterministic(tok: ReportTokenizer) -> None:
    for _ in range(3):
        assert ReportTokenizer.train(CORPUS, vocab_size=200).sha256 == tok.sha256
    assert ReportTokenizer.train(CORPUS[:-1], vocab_size=200).sha256 != tok.sha256
    assert ReportTokenizer.train(CORPUS, vocab_size=150).sha256 != tok.sha256


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"texts": []}, r"empty corpus \(0 texts"),
        ({"texts": ["  ", ""]}, r"empty corpus \(2 texts"),
        ({"texts": CORPUS, "vocab_size": 20}, r"vocab_size=20 is below .* use at least \d+"),
        ({"texts": CORPUS, "min_frequency": 0}, "min_frequency must be at least 1, got 0"),
        ({"texts": "one report"}, "list of texts"),
    ],
)
def test_training_refuses_bad_input(kwargs: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        ReportTokenizer.train(**kwargs)


def test_smallest_vocab_is_accepted() -> None:
    with pytest.raises(ValueError) as info:
        ReportTokenizer.train(CORPUS, vocab_size=5)
    smallest = int(str(info.value).rsplit(" ", 1)[-1])
    assert ReportTokenizer.train(CORPUS, vocab_size=smallest).vocab_size == smallest


def test_save_load_gives_identical_encodings(tok: ReportTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "card" / "tokenizer.json"
    tok.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokenizer.json"]  # no temporaries
    assert path.read_text(encoding="utf-8") == tok.to_json()
    loaded = ReportTokenizer.load(path, sha256=tok.sha256)
    assert loaded.sha256 == tok.sha256
    assert loaded.to_json() == tok.to_json()
    for a, b in zip(tok.encode(CORPUS, 16), loaded.encode(CORPUS, 16), strict=True):
        np.testing.assert_array_equal(a, b)
    assert ReportTokenizer.from_json(tok.to_json()).sha256 == tok.sha256


def test_load_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "run" / "tokenizer.json"
    with pytest.raises(CheckpointError, match="travel with the checkpoint") as info:
        ReportTokenizer.load(path)
    assert str(path) in str(info.value)
    assert "missing" in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        "{ not json",
        json.dumps({"version": "1.0"}),
        # a tokenizer of another kind: BPE, no special tokens
        '{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,'
        '"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{"type":"BPE",'
        '"dropout":null,"unk_token":null,"continuing_subword_prefix":null,'
        '"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,'
        '"vocab":{"a":0},"merges":[]}}',
    ],
)
def test_load_corrupt_file_is_a_checkpoint_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match="tokenizer.json is corrupt.*travel with the"):
        ReportTokenizer.load(path)


def test_load_checks_the_card_digest(tok: ReportTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    with pytest.raises(CheckpointError, match="not the 000000000000... the model card names"):
        ReportTokenizer.load(path, sha256="0" * 64)


@pytest.mark.integration
def test_trains_on_the_iu_reports_quickly_and_deterministically(shared_data: Path) -> None:
    corpus = read_report_archive(shared_data / "image2d" / "cxr" / "NLMCXR_reports.tgz")
    texts = [r.text for r in corpus.reports]
    start = time.process_time()
    tok = ReportTokenizer.train(texts, vocab_size=4000)
    seconds = time.process_time() - start
    assert seconds < 5, f"training on {len(texts)} reports took {seconds:.2f} s of CPU"
    # fewer than 4000 pieces occur twice in this corpus; the vocabulary stops there
    assert 3000 < tok.vocab_size <= 4000
    assert ReportTokenizer.train(texts, vocab_size=4000).sha256 == tok.sha256
    ids, mask = tok.encode(texts, max_tokens=128)
    assert not (ids == 1).any()  # every training character has a piece
    assert mask[:, :2].all()
