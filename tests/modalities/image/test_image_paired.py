"""Reports and ECG segments that travel with radiographs: manifest cells, the rows that lack
them, the tokenizer learnt from the training reports only, and the items they add."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medssl.modalities.image import ImageModality
from medssl.modalities.image.paired import TOKENIZER_FILE
from medssl.modalities.text import LocalModelTokenizer, ReportTokenizer, load_tokenizer
from medssl.platform.batch import BatchSpec
from medssl.platform.errors import CompatibilityError, ConfigError, DataError

REPORTS = [
    "impression: right lower lobe pneumonia.",
    "findings: lungs are clear. impression: no acute cardiopulmonary disease.",
    "impression: left basilar consolidation, likely pneumonia.",
    "impression: no acute disease. normal chest.",
    "impression: patchy infiltrate in the right base.",
    "impression: clear lungs. no acute cardiopulmonary abnormality.",
]


def _dataset(tmp_path: Path, *, reports: list[str | None] | None = None, ecg: bool = False) -> Path:
    """Six 28x28 images in an npz and a manifest pairing each with a report (and an ECG)."""
    rng = np.random.default_rng(0)
    labels = np.array([1, 0, 1, 0, 1, 0])
    np.savez(
        tmp_path / "images.npz",
        train_images=rng.integers(0, 255, (6, 28, 28), dtype=np.uint8),
        train_labels=labels[:, None],
    )
    if ecg:
        segments = rng.standard_normal((4, 2, 1000)).astype(np.float32)
        np.savez(tmp_path / "ecg.npz", ecg=segments, fs=np.asarray(100.0))
    texts = REPORTS if reports is None else reports
    rows = []
    for k, text in enumerate(texts):
        row = {"subject_id": f"s{k}", "image": f"images.npz#{k}", "label": int(labels[k])}
        row["report_text"] = text or ""
        row["ecg"] = f"ecg.npz#{k}" if ecg and k < 4 else ""
        rows.append(row)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _modality(**settings: object) -> ImageModality:
    return ImageModality({"image_size": 32, "intensity": "minmax", **settings})


def test_without_text_settings_the_report_cells_are_ignored(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path, reports=[None] * 6)
    modality = _modality()
    assert len(modality.scan(manifest)) == 6
    assert "text" not in modality.contract()  # image-only cards keep their old contract
    # The image encoder's contract is the pixels'; report settings do not enter it.
    assert _modality(text={"max_tokens": 16}).contract() == modality.contract()


def test_a_row_without_a_report_is_named(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path, reports=[*REPORTS[:5], None])
    modality = _modality(text={"max_tokens": 16})
    with pytest.raises(DataError, match=r"manifest\.csv.*images\.npz#5 has no report"):
        modality.scan(manifest)
    problems = modality.validate(manifest)
    assert len(problems) == 1 and "report_text or report cell" in problems[0].message


def test_a_report_file_cell_resolves_beside_the_manifest(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path, reports=[None] * 6)
    (tmp_path / "r.txt").write_text("IMPRESSION: Right lower lobe pneumonia.")
    # Every row names the file in a `report` column; its inline report_text cell is empty.
    lines = manifest.read_text().splitlines()
    lines[0] += ",report"
    lines[1:] = [line + ",r.txt" for line in lines[1:]]
    manifest.write_text("\n".join(lines) + "\n")
    records = _modality(text={"max_tokens": 16}).scan(manifest)
    assert records[0].extra["report"] == str(tmp_path / "r.txt")


def test_the_tokenizer_learns_from_the_training_reports_only(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path)
    modality = _modality(text={"max_tokens": 16, "vocab_size": 64, "min_frequency": 1})
    records = modality.scan(manifest)
    prepared = modality.prepare(records, tmp_path / "cache")
    train = [0, 1, 2, 3]
    facts = modality.fit(prepared, train, tmp_path / "run")
    expected = ReportTokenizer.train(
        [REPORTS[i] for i in train], vocab_size=64, min_frequency=1, lowercase=True
    )
    assert facts["tokenizer_sha256"] == expected.sha256
    assert facts["max_tokens"] == 16 and facts["vocab_size"] == expected.vocab_size
    assert (tmp_path / "run" / TOKENIZER_FILE).is_file()
    item = modality.dataset(prepared, [4], "pretrain")[0]
    assert item["text"].shape == (16,) and item["text"].dtype == np.int64
    assert item["text_mask"].dtype == bool and item["text_mask"][0]
    ids, _ = expected.encode([REPORTS[4]], 16)
    assert np.array_equal(item["text"], ids[0])


def test_a_fitted_folder_s_tokenizer_wins_over_a_new_fit(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path)
    modality = _modality(text={"max_tokens": 16, "vocab_size": 64, "min_frequency": 1})
    prepared = modality.prepare(modality.scan(manifest), tmp_path / "cache")
    saved = ReportTokenizer.train(REPORTS[4:], vocab_size=64, min_frequency=1)
    (tmp_path / "model").mkdir()
    saved.save(tmp_path / "model" / TOKENIZER_FILE)
    facts = modality.fit(prepared, [0, 1, 2, 3], tmp_path / "run", fitted=tmp_path / "model")
    assert facts["tokenizer_sha256"] == saved.sha256


def test_a_local_model_s_tokenizer_encodes_the_reports(
    tmp_path: Path, tiny_language_model: Path
) -> None:
    manifest = _dataset(tmp_path)
    modality = _modality(text={"max_tokens": 16, "model": str(tiny_language_model)})
    modality.check_run(["pretrain"])
    prepared = modality.prepare(modality.scan(manifest), tmp_path / "cache")
    facts = modality.fit(prepared, [0, 1, 2, 3], tmp_path / "run")
    expected = LocalModelTokenizer.from_folder(tiny_language_model)
    assert facts["text_model"] == str(tiny_language_model.resolve())
    assert facts["tokenizer_sha256"] == expected.sha256
    assert facts["vocab_size"] == expected.vocab_size and facts["max_tokens"] == 16
    saved = load_tokenizer(tmp_path / "run" / TOKENIZER_FILE, sha256=expected.sha256)
    assert isinstance(saved, LocalModelTokenizer)
    item = modality.dataset(prepared, [4], "pretrain")[0]
    assert np.array_equal(item["text"], expected.encode([REPORTS[4]], 16)[0][0])
    # A fitted folder's bundle wins; one of the other kind is refused, naming the key.
    facts = modality.fit(prepared, [0], tmp_path / "again", fitted=tmp_path / "run")
    assert facts["tokenizer_sha256"] == expected.sha256
    wordpiece = _modality(text={"max_tokens": 16})
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.text\.model.*is not set; set it"):
        wordpiece.fit(prepared, [0], tmp_path / "wp", fitted=tmp_path / "run")


def test_a_missing_model_folder_is_refused_before_any_data_is_read(tmp_path: Path) -> None:
    modality = _modality(text={"model": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match=r"data\.preprocessing\.text\.model: .*nowhere"):
        modality.check_run(["pretrain"])


def test_ecg_segments_and_their_presence(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path, ecg=True)
    modality = _modality(text={"max_tokens": 16}, ecg={"fs": 100, "length": 1000})
    prepared = modality.prepare(modality.scan(manifest), tmp_path / "cache")
    facts = modality.fit(prepared, [0, 1, 2, 3], tmp_path / "run")
    assert facts["ecg_leads"] == 2 and facts["ecg_length"] == 1000
    items = [modality.dataset(prepared, [k], "pretrain")[0] for k in (0, 5)]
    assert items[0]["ecg"].shape == (2, 1000) and items[0]["ecg_present"]
    assert not items[1]["ecg_present"] and not items[1]["ecg"].any()


def test_an_ecg_at_another_rate_names_the_file_and_the_fix(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path, ecg=True)
    modality = _modality(text={"max_tokens": 16}, ecg={"fs": 250, "length": 1000})
    prepared = modality.prepare(modality.scan(manifest), tmp_path / "cache")
    with pytest.raises(DataError, match=r"ecg\.npz: segments are at 100 Hz.*ecg\.fs=100"):
        modality.fit(prepared, [0, 1, 2, 3], tmp_path / "run")


def test_ecg_settings_without_an_ecg_column_are_refused(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path)
    modality = _modality(text={"max_tokens": 16}, ecg={})
    with pytest.raises(DataError, match="no row has an ecg cell"):
        modality.scan(manifest)


def test_text_methods_on_image_only_settings_say_what_to_set() -> None:
    spec = BatchSpec(fields=frozenset({"index", "text", "text_mask"}))
    with pytest.raises(CompatibilityError, match=r"data\.preprocessing\.text"):
        _modality().check_batches("convirt", spec, "pretrain.method")
    _modality(text={}).check_batches("convirt", spec, "pretrain.method")
