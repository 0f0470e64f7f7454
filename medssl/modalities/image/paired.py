"""What travels with a radiograph besides its pixels: the report text (a `report_text` cell or
a `report` file per manifest row) and, for tri-modal pretraining, an ECG segment (`ecg`).

Settings come from `data.preprocessing.text` / `.ecg`; the tokenizer is trained on the
training reports only (`fit_paired`), after the subject-level split, or is the one of a local
pretrained language model (`text.model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medssl.modalities.base import Problem, Record
from medssl.modalities.manifest import cell_text
from medssl.modalities.npz import split_npz_ref
from medssl.modalities.text import (
    LocalModelTokenizer,
    ReportTokenizer,
    clean_report_text,
    load_tokenizer,
    read_report,
)
from medssl.platform.errors import ConfigError, DataError
from medssl.platform.local_hf import MODEL_KEY, model_folder

#: Where a fitted tokenizer is saved (in the run folder, then beside the pretrained weights).
TOKENIZER_FILE = "tokenizer.json"


class TextSettings(BaseModel):
    """`data.preprocessing.text`: how report text becomes token ids.

    max_tokens: ids per report, [CLS] and [SEP] included (longer reports are cut).
    vocab_size: the WordPiece vocabulary learnt from the training reports.
    min_frequency: how often a piece must occur in the training reports to enter it.
    lowercase: fold case before tokenising.
    model: a local Hugging Face model folder (config.json, weights, tokenizer files) whose
        tokenizer encodes the reports instead of a trained WordPiece (vocab_size,
        min_frequency and lowercase are then unused: the folder's tokenizer decides), and
        whose weights the text tower starts from (pretrain.method.text_encoder.model
        pretrained). Nothing is downloaded. None (default): WordPiece.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(128, ge=8, le=1024)
    vocab_size: int = Field(4000, ge=64)
    min_frequency: int = Field(2, ge=1)
    lowercase: bool = True
    model: str | None = Field(None, min_length=1)


class EcgSettings(BaseModel):
    """`data.preprocessing.ecg`: the ECG segment paired with a radiograph (`ecg` column,
    `<file.npz>#<k>` of an npz whose `ecg` array is (K, leads, T) and whose `fs` is the
    sampling rate). Segments must already be at `fs` and `length` samples."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fs: float = Field(100.0, gt=0)
    length: int = Field(1000, ge=16)


def report_cells(record: Record) -> tuple[str, str]:
    """(inline text, report file) of a record: its `report_text` cell (the report itself) and
    its `report` cell (a .txt or OpenI .xml file); either may be ''."""
    return cell_text(record.extra.get("report_text")), cell_text(record.extra.get("report"))


def paired_problems(
    path: str | Path, records: Sequence[Record], text: TextSettings | None, ecg: EcgSettings | None
) -> list[Problem]:
    """Rows of the dataset at `path` that lack what the settings ask for: a report per row
    when text is on; an ECG on at least one row when the ECG is on (rows without one train
    without the ECG term)."""
    problems = []
    if text is not None:
        for record in records:
            inline, file = report_cells(record)
            if not inline and not file:
                problems.append(
                    Problem(
                        str(path),
                        f"the row of {record.image} has no report; give it a report_text or "
                        "report cell, or drop the row (data.preprocessing.text needs a report "
                        "for every image)",
                    )
                )
            elif not inline and not Path(file).is_file():
                problems.append(Problem(file, "report file does not exist; fix the report cell"))
    if ecg is not None and records and not any(cell_text(r.extra.get("ecg")) for r in records):
        problems.append(
            Problem(
                str(path),
                "no row has an ecg cell, but data.preprocessing.ecg is set; add an ecg column "
                "(<file.npz>#<k>) or remove data.preprocessing.ecg",
            )
        )
    return problems


def read_report_texts(records: Sequence[Record]) -> list[str]:
    """The cleaned report text of every record (an inline cell, else its file); DataError
    naming the row or file whose report is empty after cleaning."""
    texts, empty = [], []
    for record in records:
        inline, file = report_cells(record)
        text = clean_report_text(inline) if inline else read_report(file).text
        if not text.strip():
            empty.append(f"the report of {record.image}" if inline else file)
        texts.append(text)
    if empty:
        listed = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(
            f"{len(empty)} report(s) are empty once de-identification placeholders are removed "
            f"({listed}); drop those rows from the manifest"
        )
    return texts


def read_ecg_segments(
    records: Sequence[Record], settings: EcgSettings
) -> tuple[np.ndarray, np.ndarray]:
    """(segments (N, leads, length) float32, present (N,) bool) from the `ecg` cells; rows
    without a cell get zeros. DataError naming the file on a wrong rate, length or lead count."""
    arrays: dict[str, tuple[np.ndarray, float]] = {}
    refs = [cell_text(r.extra.get("ecg")) for r in records]
    segments: list[np.ndarray | None] = []
    for ref in refs:
        if not ref:
            segments.append(None)
            continue
        parts = split_npz_ref(ref)
        if parts is None:
            raise DataError(f"{ref}: an ecg cell must name an npz item as <file.npz>#<k>")
        file, k = parts
        if file not in arrays:
            arrays[file] = _ecg_archive(file, settings)
        data = arrays[file][0]
        if not 0 <= k < len(data):
            raise DataError(f"{ref}: {file} holds {len(data)} segments; fix the index")
        segments.append(np.asarray(data[k], dtype=np.float32))
    leads = {s.shape[0] for s in segments if s is not None}
    if len(leads) > 1:
        raise DataError(f"ecg segments have different lead counts {sorted(leads)}; use one layout")
    n_leads = leads.pop() if leads else 1
    out = np.zeros((len(records), n_leads, settings.length), dtype=np.float32)
    present = np.zeros(len(records), dtype=bool)
    for i, segment in enumerate(segments):
        if segment is not None:
            out[i], present[i] = segment, True
    return out, present


def _ecg_archive(file: str, settings: EcgSettings) -> tuple[np.ndarray, float]:
    try:
        with np.load(file, allow_pickle=False) as archive:
            data, fs = np.asarray(archive["ecg"]), float(np.asarray(archive["fs"]))
    except (OSError, KeyError, ValueError) as err:
        raise DataError(
            f"{file}: cannot read an ECG npz with arrays 'ecg' (K, leads, T) and 'fs' ({err})"
        ) from err
    if data.ndim != 3 or data.shape[2] != settings.length:
        raise DataError(
            f"{file}: ecg has shape {data.shape}, expected (K, leads, {settings.length}); "
            "cut the segments to data.preprocessing.ecg.length samples"
        )
    if abs(fs - settings.fs) > 1e-6:
        raise DataError(
            f"{file}: segments are at {fs:g} Hz but data.preprocessing.ecg.fs is "
            f"{settings.fs:g}; resample them or set data.preprocessing.ecg.fs={fs:g}"
        )
    return data, fs


@dataclass
class PairedData:
    """Paired inputs of every prepared record, held in memory (reports are short).

    text_ids / text_mask: (N, max_tokens) int64 / bool, or None without text.
    ecg / ecg_present: (N, leads, T) float32 / (N,) bool, or None without ECG.
    """

    tokenizer: ReportTokenizer | LocalModelTokenizer | None = None
    text_ids: np.ndarray | None = None
    text_mask: np.ndarray | None = None
    ecg: np.ndarray | None = None
    ecg_present: np.ndarray | None = None

    def item(self, i: int) -> dict[str, Any]:
        """The paired fields of record i, as a Batch item's entries."""
        item: dict[str, Any] = {}
        if self.text_ids is not None and self.text_mask is not None:
            item["text"], item["text_mask"] = self.text_ids[i], self.text_mask[i]
        if self.ecg is not None and self.ecg_present is not None:
            item["ecg"], item["ecg_present"] = self.ecg[i], self.ecg_present[i]
        return item


def fit_paired(
    records: Sequence[Record],
    train: Sequence[int],
    folder: str | Path,
    text: TextSettings | None,
    ecg: EcgSettings | None,
    fitted: str | Path | None = None,
) -> tuple[PairedData, dict[str, Any]]:
    """Tokenise every report with a tokenizer trained on the `train` reports, or the local
    model's (`text.model`), or the one saved in `fitted`, saved as `folder/tokenizer.json`,
    and read every ECG segment. Returns the paired data and the facts methods size their
    towers by (with a model also `text_model`, its folder)."""
    paired, facts = PairedData(), {}
    if text is not None:
        texts = read_report_texts(records)
        tokenizer = report_tokenizer(text, [texts[i] for i in train], fitted)
        path = Path(folder) / TOKENIZER_FILE
        tokenizer.save(path)
        ids, mask = tokenizer.encode(texts, text.max_tokens)
        paired.tokenizer, paired.text_ids, paired.text_mask = tokenizer, ids, mask
        facts.update(
            vocab_size=tokenizer.vocab_size,
            max_tokens=text.max_tokens,
            tokenizer_file=str(path),
            tokenizer_sha256=tokenizer.sha256,
        )
        if text.model is not None:
            facts["text_model"] = str(model_folder(text.model))
    if ecg is not None:
        segments, present = read_ecg_segments(records, ecg)
        paired.ecg, paired.ecg_present = segments, present
        facts.update(ecg_leads=int(segments.shape[1]), ecg_length=ecg.length, ecg_fs=ecg.fs)
    return paired, facts


def report_tokenizer(
    text: TextSettings, train_texts: Sequence[str], fitted: str | Path | None
) -> ReportTokenizer | LocalModelTokenizer:
    """The tokenizer saved in `fitted` (a pretrained model's: it wins, so probing reads the
    reports as pretraining did), else the local model's, else a WordPiece trained on
    `train_texts`. A saved tokenizer of the other kind than `text` asks for is refused."""
    saved = Path(fitted) / TOKENIZER_FILE if fitted is not None else None
    if saved is not None and saved.is_file():
        tokenizer = load_tokenizer(saved)
        if isinstance(tokenizer, LocalModelTokenizer) != (text.model is not None):
            raise ConfigError(
                f"{MODEL_KEY}: the model in {saved.parent} read its reports with "
                + (
                    f"the tokenizer of a pretrained language model, but {MODEL_KEY} is not set; "
                    "set it to the model folder that model was tuned from"
                    if text.model is None
                    else f"a WordPiece trained on reports, but {MODEL_KEY} is set; remove it"
                )
            )
        return tokenizer
    if text.model is not None:
        return LocalModelTokenizer.from_folder(text.model)
    return ReportTokenizer.train(
        train_texts,
        vocab_size=text.vocab_size,
        min_frequency=text.min_frequency,
        lowercase=text.lowercase,
    )
