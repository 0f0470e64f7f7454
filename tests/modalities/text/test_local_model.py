"""The tokenizer of a local pretrained language model: ReportTokenizer's fixed-length arrays,
a one-file bundle that travels with a checkpoint (the original folder no longer needed), the
right kind read back by `load_tokenizer`, and errors that name the key or file to fix."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.text import LocalModelTokenizer, ReportTokenizer, load_tokenizer
from medssl.platform.errors import CheckpointError, ConfigError

TEXTS = ["No acute cardiopulmonary disease.", "Right lower lobe pneumonia. " * 20, ""]


@pytest.fixture(scope="module")
def tok(tiny_language_model: Path) -> LocalModelTokenizer:
    return LocalModelTokenizer.from_folder(tiny_language_model)


def test_encode_gives_fixed_length_framed_rows(tok: LocalModelTokenizer) -> None:
    ids, mask = tok.encode(TEXTS, max_tokens=16)
    assert ids.shape == mask.shape == (3, 16)
    assert ids.dtype == np.int64 and mask.dtype == bool
    cls_id, sep_id = tok._tokenizer.cls_token_id, tok._tokenizer.sep_token_id
    assert (ids[:, 0] == cls_id).all()
    lengths = mask.sum(axis=1)
    assert lengths[1] == 16 and lengths[2] == 2  # cut to max_tokens; empty: [CLS] [SEP]
    assert all(ids[r, n - 1] == sep_id for r, n in enumerate(lengths))  # [SEP] kept on a cut
    assert (ids[~mask] == tok.pad_id).all() and mask[:, :2].all()
    assert tok.decode(ids[0]) == "no acute cardiopulmonary disease."
    assert tok.vocab_size == len(tok._tokenizer)
    empty_ids, empty_mask = tok.encode([], max_tokens=8)
    assert empty_ids.shape == empty_mask.shape == (0, 8)
    with pytest.raises(ValueError, match="single string"):
        tok.encode("no acute disease", max_tokens=8)  # type: ignore[arg-type]


def test_the_bundle_travels_without_the_model_folder(
    tiny_language_model: Path, tmp_path: Path
) -> None:
    folder = shutil.copytree(tiny_language_model, tmp_path / "model")
    original = LocalModelTokenizer.from_folder(folder)
    original.save(tmp_path / "tokenizer.json")
    shutil.rmtree(folder)
    again = load_tokenizer(tmp_path / "tokenizer.json", sha256=original.sha256)
    assert isinstance(again, LocalModelTokenizer)
    assert again.sha256 == original.sha256 and again.to_json() == original.to_json()
    for a, b in zip(original.encode(TEXTS, 12), again.encode(TEXTS, 12), strict=True):
        assert np.array_equal(a, b)
    bundle = json.loads((tmp_path / "tokenizer.json").read_text())
    assert "tokenizer.json" in bundle["files"] and "config.json" in bundle["files"]


def test_load_tokenizer_reads_either_kind(tok: LocalModelTokenizer, tmp_path: Path) -> None:
    wordpiece = ReportTokenizer.train(["the lungs are clear."] * 3, vocab_size=60)
    wordpiece.save(tmp_path / "wordpiece.json")
    assert isinstance(load_tokenizer(tmp_path / "wordpiece.json"), ReportTokenizer)
    tok.save(tmp_path / "bundle.json")
    assert isinstance(load_tokenizer(tmp_path / "bundle.json"), LocalModelTokenizer)


def test_a_missing_changed_or_corrupt_bundle_is_refused(
    tok: LocalModelTokenizer, tmp_path: Path
) -> None:
    path = tmp_path / "tokenizer.json"
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is missing.*travel"):
        LocalModelTokenizer.load(path)
    tok.save(path)
    with pytest.raises(CheckpointError, match="not the 000000000000... the model card names"):
        load_tokenizer(path, sha256="0" * 64)
    bundle = json.loads(path.read_text())
    bundle["files"] = {"config.json": bundle["files"]["config.json"]}
    path.write_text(json.dumps(bundle))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is corrupt"):
        load_tokenizer(path)


def test_a_missing_folder_or_tokenizer_names_the_data_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.text\.model: .* not a folder"):
        LocalModelTokenizer.from_folder(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.text\.model: .* no tokenizer files"):
        LocalModelTokenizer.from_folder(tmp_path)


def test_missing_transformers_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    monkeypatch.setitem(sys.modules, "transformers", None)  # the import now fails
    with pytest.raises(ConfigError, match=r"transformers.*pip install 'medssl\[text-hf\]'"):
        LocalModelTokenizer.from_folder(tmp_path)
