"""Shared test fixtures: where the real data lives.

The real files sit outside the repository; `MEDSSL_TEST_DATA` overrides the default location.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: `<repo root>/../shared/data`, unless MEDSSL_TEST_DATA says otherwise.
_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_root() -> Path:
    """The real-data folder (it may not exist; the fixture skips then)."""
    return Path(os.environ.get("MEDSSL_TEST_DATA", str(_DEFAULT_DATA)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder, or a skip naming the variable to set when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real test data not found at {root}; set MEDSSL_TEST_DATA to its folder")
    return root


def _medssl_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real `medssl` command, run from `cwd` with this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("MEDSSL_LOG", None)
    return subprocess.run(
        [sys.executable, "-m", "medssl.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def medssl_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`medssl_cli(*args, cwd=folder)`: the real command in a subprocess."""
    return _medssl_cli


#: Report phrases the tiny language model's WordPiece vocabulary is trained on.
TINY_LM_CORPUS = [
    "no acute cardiopulmonary disease.",
    "the lungs are clear. normal chest.",
    "right lower lobe pneumonia.",
    "patchy airspace infiltrate in the left base, likely consolidation.",
    "heart size is normal. no pleural effusion or pneumothorax.",
]


@pytest.fixture(scope="session")
def tiny_language_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local model folder as `save_pretrained` writes it, built offline: a BERT of 2
    layers, width 32, 2 heads, with a WordPiece tokenizer trained on a few report phrases.
    Skips when transformers (the text-hf extra) is not installed."""
    transformers = pytest.importorskip(
        "transformers", reason="transformers (pip install 'medssl[text-hf]') is not installed"
    )
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials, show_progress=False)
    wordpiece.train_from_iterator(TINY_LM_CORPUS * 4, trainer=trainer)
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = transformers.BertTokenizerFast(
        tokenizer_object=wordpiece,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer.save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    transformers.utils.logging.disable_progress_bar()
    try:
        transformers.BertModel(config).save_pretrained(folder)
    finally:
        transformers.utils.logging.enable_progress_bar()
    return folder
