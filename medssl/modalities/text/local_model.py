"""The tokenizer of a pretrained language model in a local folder the user names, behind the
`ReportTokenizer` surface; saved as one JSON bundle of the folder's tokenizer files, so it
travels with a checkpoint. `load_tokenizer` reads either kind back."""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.text.tokenizer import ReportTokenizer, _text_list, read_tokenizer_file
from medssl.platform.errors import ConfigError
from medssl.platform.io import atomic_write_text
from medssl.platform.local_hf import MODEL_KEY, import_hf, model_folder, quiet_loading

__all__ = ["TOKENIZER_FILES", "LocalModelTokenizer", "load_tokenizer"]

#: What a saved bundle says it is.
BUNDLE_FORMAT = "medssl.local-model-tokenizer/1"
#: The files of a model folder that make its tokenizer (those present are bundled);
#: config.json names the tokenizer class when tokenizer_config.json does not.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "config.json",
)
_TRAVEL = (
    "the tokenizer must travel with the checkpoint and its model card, so copy it from the "
    "run that trained the weights"
)


class LocalModelTokenizer:
    """The tokenizer of a local Hugging Face model folder (transformers' `AutoTokenizer`,
    never downloading), encoding to the same fixed-length (ids, mask) arrays as
    `ReportTokenizer`: the model's own framing ([CLS] ... [SEP] for BERT), cut to
    `max_tokens` keeping the closing token, padded on the right with the model's pad id.

    The tokenizer is rebuilt from the bundled file contents (`files`), so what it encodes
    with is exactly what `sha256` names and `save` writes. Build one with `from_folder` or
    `load`.

    Args:
        files: the tokenizer files by name (bytes), as `from_folder` collects them.

    Example (a model folder with a BERT tokenizer):
        >>> tok = LocalModelTokenizer.from_folder(folder)  # doctest: +SKIP
        >>> ids, mask = tok.encode(["No acute disease."], max_tokens=16)  # doctest: +SKIP
        >>> ids.dtype, mask.dtype  # doctest: +SKIP
        (dtype('int64'), dtype('bool'))
    """

    def __init__(self, files: Mapping[str, bytes]) -> None:
        if not any(name != "config.json" for name in files):
            raise ValueError("no tokenizer files given")
        self._files = {name: bytes(files[name]) for name in sorted(files)}
        self._tokenizer = _auto_tokenizer(self._files)
        if self._tokenizer.pad_token_id is None:
            raise ValueError(
                "the tokenizer has no pad token, so reports cannot be padded to max_tokens; "
                "use a model whose tokenizer defines one (BERT-style encoders do)"
            )
        # Position 0 must be the model's first token ([CLS]) for pool "cls".
        self._tokenizer.padding_side = "right"
        self._tokenizer.truncation_side = "right"

    @classmethod
    def from_folder(cls, folder: str | Path, key: str = MODEL_KEY) -> LocalModelTokenizer:
        """The tokenizer of the model in `folder`; ConfigError naming `key` when the folder,
        its tokenizer files or transformers are missing."""
        path = model_folder(folder, key)
        files = {n: (path / n).read_bytes() for n in TOKENIZER_FILES if (path / n).is_file()}
        if set(files) <= {"config.json"}:
            raise ConfigError(
                f"{key}: {folder} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:6])}, "
                "...); save the model's tokenizer there with save_pretrained"
            )
        try:
            return cls(files)
        except ValueError as err:
            raise ConfigError(f"{key}: the tokenizer in {folder} cannot be used ({err})") from None

    # ------------------------------------------------------------------------- use

    def encode(self, texts: Sequence[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (N, max_tokens), mask bool (N, max_tokens)): each text as the model
        frames it, cut to `max_tokens` and padded with the pad id; mask True at real tokens.

        Raises:
            ValueError: `max_tokens` below 2, or `texts` is a single string.
        """
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2, got {max_tokens}")
        texts = _text_list(texts)
        if not texts:
            return np.zeros((0, max_tokens), np.int64), np.zeros((0, max_tokens), bool)
        encoded = self._tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=max_tokens,
            return_attention_mask=True,
        )
        ids = np.asarray(encoded["input_ids"], dtype=np.int64)
        mask = np.asarray(encoded["attention_mask"], dtype=bool)
        return ids, mask

    def decode(self, ids_row: Sequence[int] | np.ndarray) -> str:
        """The text of one row of ids, special tokens and padding left out."""
        kept = [int(i) for i in ids_row]
        return str(self._tokenizer.decode(kept, skip_special_tokens=True))

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included (ids are 0 .. vocab_size - 1)."""
        return len(self._tokenizer)

    @property
    def pad_id(self) -> int:
        """The model's padding id."""
        return int(self._tokenizer.pad_token_id)

    # ------------------------------------------------------------------------- storage

    def to_json(self) -> str:
        """The bundle: every tokenizer file's content (text, or base64 for binary files) in
        one canonical JSON text; `from_json` reads it back unchanged."""
        files: dict[str, dict[str, str]] = {}
        for name, data in self._files.items():
            try:
                files[name] = {"text": data.decode("utf-8")}
            except UnicodeDecodeError:
                files[name] = {"base64": base64.b64encode(data).decode("ascii")}
        # The format first, the files in name order: one canonical text per bundle.
        return json.dumps({"format": BUNDLE_FORMAT, "files": files}, indent=1)

    @property
    def sha256(self) -> str:
        """Hex sha256 of `to_json()`: the fingerprint of the folder's tokenizer files, the
        same after save / load, so a model card can name the tokenizer."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> LocalModelTokenizer:
        """A tokenizer from `to_json()` text; ValueError when it is not such a bundle."""
        try:
            bundle = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not JSON ({err})") from err
        if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"not a {BUNDLE_FORMAT} bundle")
        files = {}
        for name, content in dict(bundle.get("files") or {}).items():
            if "text" in content:
                files[name] = str(content["text"]).encode("utf-8")
            else:
                files[name] = base64.b64decode(str(content.get("base64", "")))
        return cls(files)

    def save(self, path: str | Path) -> None:
        """Write `to_json()` to `path` atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None) -> LocalModelTokenizer:
        """Read a bundle saved with `save`; CheckpointError naming the file when it is
        missing, corrupt or not the one `sha256` names."""
        return read_tokenizer_file(Path(path), cls.from_json, sha256, _TRAVEL)

    def __repr__(self) -> str:
        kind = type(self._tokenizer).__name__
        return (
            f"LocalModelTokenizer({kind}, vocab_size={self.vocab_size}, sha256={self.sha256[:12]})"
        )


def load_tokenizer(
    path: str | Path, sha256: str | None = None
) -> ReportTokenizer | LocalModelTokenizer:
    """The tokenizer saved at `path`, of the kind saved there: a local model's bundle or a
    trained WordPiece `ReportTokenizer`; CheckpointError as their `load`."""
    path = Path(path)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        saved = None  # the ReportTokenizer's load names the problem
    if isinstance(saved, dict) and saved.get("format") == BUNDLE_FORMAT:
        return LocalModelTokenizer.load(path, sha256)
    return ReportTokenizer.load(path, sha256)


def _auto_tokenizer(files: Mapping[str, bytes]) -> Any:
    """transformers' AutoTokenizer over `files`, written to a scratch folder first (the
    library reads folders): local files only, no code from the folder."""
    transformers = import_hf("transformers", f"a pretrained model's tokenizer ({MODEL_KEY})")
    with tempfile.TemporaryDirectory(prefix="medssl-tokenizer-") as scratch:
        for name, data in files.items():
            if Path(name).name != name:
                raise ValueError(f"bundled file name {name!r} is not a plain file name")
            (Path(scratch) / name).write_bytes(data)
        with quiet_loading(transformers):
            try:
                return transformers.AutoTokenizer.from_pretrained(scratch, local_files_only=True)
            except (OSError, ValueError, KeyError) as err:
                raise ValueError(f"transformers cannot build a tokenizer from it: {err}") from err
