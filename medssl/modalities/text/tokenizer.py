"""A WordPiece tokenizer for report text, trained on the training reports and saved as one
JSON file that travels with the checkpoint (nothing is downloaded).

WordPiece as in BERT (Devlin et al., "BERT: Pre-training of deep bidirectional transformers
for language understanding", NAACL 2019): BERT's normaliser and pre-tokeniser, greedy
longest-match-first sub-words with the "##" continuation prefix, built by the `tokenizers`
library's WordPiece trainer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from medssl.platform.errors import CheckpointError
from medssl.platform.io import atomic_write_text

T = TypeVar("T")

__all__ = ["SPECIAL_TOKENS", "ReportTokenizer"]

#: The special tokens, in id order: [PAD] is 0, so zero-filled arrays are padding.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = SPECIAL_TOKENS
_PREFIX = "##"
#: Longer words (after pre-tokenisation) become [UNK], as in BERT.
_MAX_WORD_CHARS = 100


class ReportTokenizer:
    """WordPiece tokenizer for radiology report text.

    Special tokens have fixed ids: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4. Text is
    cleaned and lower-cased (optionally) and accents stripped by BERT's normaliser, split
    on whitespace and punctuation by BERT's pre-tokeniser, then into WordPiece sub-words.
    Build one with `train`, `from_json` or `load`; the constructor wraps a ready
    `tokenizers.Tokenizer` and is not the usual way in.

    Example:
        >>> reports = ["no acute disease.", "no pleural effusion."] * 3
        >>> tok = ReportTokenizer.train(reports, vocab_size=60)
        >>> ids, mask = tok.encode(["No acute effusion."], max_tokens=8)
        >>> ids.shape, ids.dtype, mask.dtype
        ((1, 8), dtype('int64'), dtype('bool'))
        >>> tok.decode(ids[0])
        'no acute effusion .'
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        if not isinstance(tokenizer, Tokenizer):
            raise ValueError(f"expected a tokenizers.Tokenizer, got {type(tokenizer).__name__}")
        _check_layout(tokenizer)
        self._tokenizer = tokenizer

    # ------------------------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 4000,
        min_frequency: int = 2,
        lowercase: bool = True,
    ) -> ReportTokenizer:
        """Train a WordPiece vocabulary on `texts` (the training reports only: the
        vocabulary is part of the model). Deterministic: the same texts and settings give
        the same tokenizer, byte for byte (`sha256`).

        Args:
            texts: report texts, e.g. `[r.text for r in corpus.reports]`.
            vocab_size: most entries in the vocabulary, special tokens included; the corpus
                may have fewer sub-words that occur `min_frequency` times.
            min_frequency: fewest occurrences of a pair of pieces for it to be merged.
            lowercase: lower-case and strip accents before splitting.

        Returns:
            The trained ReportTokenizer.

        Raises:
            ValueError: no non-blank text, `min_frequency` below 1, or `vocab_size` below
                the special tokens plus the corpus's alphabet (its characters and their
                "##" continuation forms); the message gives the value and the minimum.
        """
        texts = _text_list(texts)
        if not any(t.strip() for t in texts):
            raise ValueError(
                f"cannot train a tokenizer on an empty corpus ({len(texts)} texts, none with "
                "any text); pass the training reports' texts"
            )
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be at least 1, got {min_frequency}")
        tokenizer = Tokenizer(
            models.WordPiece(unk_token=UNK, max_input_chars_per_word=_MAX_WORD_CHARS)
        )
        _set_pipeline(tokenizer, lowercase)
        alphabet, continuing = _alphabet(tokenizer, texts)
        smallest = len(SPECIAL_TOKENS) + len(alphabet) + len(continuing)
        if vocab_size < smallest:
            raise ValueError(
                f"vocab_size={vocab_size} is below the {len(SPECIAL_TOKENS)} special tokens + "
                f"{len(alphabet) + len(continuing)} alphabet pieces of this corpus; use at "
                f"least {smallest}"
            )
        # The trainer numbers "##c" pieces in hash-map order, and ties between equally
        # frequent merges are broken by those numbers: naming the pieces up front as
        # reserved tokens makes training deterministic (`_rebuild` keeps them as ordinary
        # pieces and registers only the real special tokens).
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[*SPECIAL_TOKENS, *(_PREFIX + c for c in continuing)],
            continuing_subword_prefix=_PREFIX,
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(_rebuild(tokenizer.get_vocab(), lowercase))

    # ------------------------------------------------------------------------- use

    def encode(self, texts: Sequence[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of each text as [CLS] tokens [SEP], cut to `max_tokens` (the last
        kept position holding [SEP]) and padded with [PAD].

        Args:
            texts: N texts (a list, not a lone string).
            max_tokens: length of every row, at least 2 ([CLS] and [SEP]).

        Returns:
            (ids, mask): ids int64 (N, max_tokens); mask bool (N, max_tokens), True on
            [CLS], the tokens and [SEP], False on padding. Both are plain numpy arrays,
            ready for `.npy` caching.

        Raises:
            ValueError: `max_tokens` below 2, or `texts` is a single string.

        Example:
            >>> tok = ReportTokenizer.train(["lungs are clear."] * 2, vocab_size=40)
            >>> ids, mask = tok.encode(["lungs are clear.", ""], max_tokens=4)
            >>> ids[:, [0, -1]].tolist(), ids[1].tolist(), mask.sum(axis=1).tolist()
            ([[2, 3], [2, 0]], [2, 3, 0, 0], [4, 2])
        """
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2 ([CLS] and [SEP]), got {max_tokens}")
        texts = _text_list(texts)
        ids = np.zeros((len(texts), max_tokens), dtype=np.int64)  # [PAD] is 0
        if not texts:
            return ids, np.zeros((0, max_tokens), dtype=bool)
        sep = SPECIAL_TOKENS.index(SEP)
        lengths = np.empty(len(texts), dtype=np.int64)
        for row, encoding in enumerate(self._tokenizer.encode_batch(texts)):
            tokens = encoding.ids  # [CLS] ... [SEP], from the post-processor
            if len(tokens) > max_tokens:
                tokens = [*tokens[: max_tokens - 1], sep]
            ids[row, : len(tokens)] = tokens
            lengths[row] = len(tokens)
        mask = np.arange(max_tokens)[None, :] < lengths[:, None]
        return ids, mask

    def decode(self, ids_row: Sequence[int] | np.ndarray) -> str:
        """The text of one row of ids: [PAD], [CLS] and [SEP] left out, sub-words joined,
        words separated by one space (punctuation is a word of its own); [UNK] and [MASK]
        stay visible.

        Args:
            ids_row: token ids, e.g. `ids[i]` from `encode`.

        Returns:
            The decoded text; for text whose characters were all seen in training this is
            `normalise(text)`.
        """
        framing = {SPECIAL_TOKENS.index(t) for t in (PAD, CLS, SEP)}
        kept = [int(i) for i in ids_row if int(i) not in framing]
        return str(self._tokenizer.decode(kept, skip_special_tokens=False))

    def normalise(self, text: str) -> str:
        """`text` as the tokenizer sees it: normalised (cleaned, lower-cased if trained so)
        and split into words, joined by single spaces.

        Example:
            >>> ReportTokenizer.train(["heart normal."], vocab_size=40).normalise("Heart  NORMAL.")
            'heart normal .'
        """
        normalised = self._tokenizer.normalizer.normalize_str(text)
        words = self._tokenizer.pre_tokenizer.pre_tokenize_str(normalised)
        return " ".join(word for word, _ in words)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included (ids are 0 .. vocab_size - 1)."""
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    @property
    def pad_id(self) -> int:
        """Id of [PAD] (0)."""
        return SPECIAL_TOKENS.index(PAD)

    @property
    def mask_id(self) -> int:
        """Id of [MASK] (4), for masked-language-model objectives."""
        return SPECIAL_TOKENS.index(MASK)

    # ------------------------------------------------------------------------- storage

    def to_json(self) -> str:
        """The whole tokenizer (vocabulary, normaliser, pre-tokeniser, special tokens) as
        the `tokenizers` library's JSON; `from_json` reads it back unchanged."""
        return str(self._tokenizer.to_str())

    @property
    def sha256(self) -> str:
        """Hex sha256 of `to_json()`, i.e. of the saved file: the same after save / load,
        so a model card can name the tokenizer its weights were trained with."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> ReportTokenizer:
        """A tokenizer from `to_json()` text.

        Raises:
            ValueError: the text is not a WordPiece tokenizer JSON with this class's special
                tokens at their ids.
        """
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as err:  # the library raises a bare Exception on bad JSON
            raise ValueError(f"not a tokenizer JSON ({err})") from err
        return cls(tokenizer)

    def save(self, path: str | Path) -> None:
        """Write `to_json()` to `path` atomically (a reader never sees half a file)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None) -> ReportTokenizer:
        """Read a tokenizer saved with `save`.

        Args:
            path: the tokenizer JSON.
            sha256: the digest a model card recorded, checked when given.

        Returns:
            The ReportTokenizer.

        Raises:
            CheckpointError: the file is missing, unreadable, not a report tokenizer, or not
                the one `sha256` names; the message names the file.
        """
        travel = (
            "the report tokenizer must travel with the checkpoint and its model card, so "
            "copy it from the run that trained the weights"
        )
        return read_tokenizer_file(Path(path), cls.from_json, sha256, travel)

    def __repr__(self) -> str:
        return f"ReportTokenizer(vocab_size={self.vocab_size}, sha256={self.sha256[:12]})"


# ----------------------------------------------------------------------------- helpers


def _text_list(texts: Iterable[str]) -> list[str]:
    """`texts` as a list of str; a lone string (which would iterate as characters) refused."""
    if isinstance(texts, str):
        raise ValueError("pass a list of texts, not a single string")
    return [str(t) for t in texts]


def _set_pipeline(tokenizer: Tokenizer, lowercase: bool) -> None:
    """BERT's normaliser and pre-tokeniser, a WordPiece decoder, and [CLS] $A [SEP]."""
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # cleanup=False: the library's clean-up also rewrites words (" do not" -> " don't").
    tokenizer.decoder = decoders.WordPiece(prefix=_PREFIX, cleanup=False)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        special_tokens=[(CLS, SPECIAL_TOKENS.index(CLS)), (SEP, SPECIAL_TOKENS.index(SEP))],
    )


def _alphabet(tokenizer: Tokenizer, texts: list[str]) -> tuple[list[str], list[str]]:
    """(characters, characters that can continue a word) of the normalised corpus, sorted.

    The normaliser works character by character, so normalising each distinct raw
    character gives the corpus's alphabet without normalising the whole corpus."""
    normalizer = tokenizer.normalizer
    pre_tokenizer = tokenizer.pre_tokenizer
    raw = set().union(*map(set, texts))
    alphabet: set[str] = set()
    for char in raw:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(char)):
            alphabet.update(word)
    continuing = {
        c
        for c in alphabet
        if len(pre_tokenizer.pre_tokenize_str(normalizer.normalize_str("a" + c))) == 1
    }
    return sorted(alphabet), sorted(continuing)


def _rebuild(vocab: dict[str, int], lowercase: bool) -> Tokenizer:
    """A tokenizer over the trained vocabulary (in trained id order), with only the real
    special tokens registered as such."""
    ordered = {token: i for i, token in enumerate(sorted(vocab, key=vocab.__getitem__))}
    tokenizer = Tokenizer(
        models.WordPiece(
            ordered,
            unk_token=UNK,
            continuing_subword_prefix=_PREFIX,
            max_input_chars_per_word=_MAX_WORD_CHARS,
        )
    )
    _set_pipeline(tokenizer, lowercase)
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    )
    return tokenizer


def _check_layout(tokenizer: Tokenizer) -> None:
    """ValueError unless `tokenizer` is a WordPiece tokenizer with the special tokens at
    their ids and BERT's normaliser and pre-tokeniser."""
    if not isinstance(tokenizer.model, models.WordPiece):
        raise ValueError("the model is not WordPiece")
    for expected, token in enumerate(SPECIAL_TOKENS):
        found = tokenizer.token_to_id(token)
        if found != expected:
            raise ValueError(f"special token {token} has id {found}, not {expected}")
    if tokenizer.normalizer is None or tokenizer.pre_tokenizer is None:
        raise ValueError("the normaliser or pre-tokeniser is missing")


def read_tokenizer_file(
    path: Path, parse: Callable[[str], T], sha256: str | None, travel: str
) -> T:
    """The tokenizer `parse` builds from the JSON saved at `path`, checked against the
    `sha256` a model card recorded (when given); CheckpointError naming the file when it is
    missing, unreadable, corrupt or another one, ending with `travel` (how to get it back)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = "is missing" if isinstance(err, FileNotFoundError) else f"cannot be read ({err})"
        raise CheckpointError(f"tokenizer file {path} {reason}; {travel}") from err
    try:
        tokenizer = parse(text)
    except (ValueError, OSError) as err:
        raise CheckpointError(f"tokenizer file {path} is corrupt ({err}); {travel}") from err
    found = str(tokenizer.sha256)  # type: ignore[attr-defined]
    if sha256 is not None and found != sha256:
        raise CheckpointError(
            f"tokenizer file {path} has sha256 {found[:12]}..., not the {sha256[:12]}... the "
            f"model card names; {travel}"
        )
    return tokenizer
