"""An evaluation pairing for image-report (ConVIRT) and X-ray + ECG + report (MoRE) pretraining:
MedMNIST chest X-rays paired by diagnosis with real IU X-ray reports, and optionally with
MIT-BIH ECG windows. Synthetic: image, report and ECG come from different patients.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medssl.modalities.text.diagnosis import RULE_TEXT, report_label
from medssl.modalities.text.reports import Report, ReportCorpus, read_report_archive
from medssl.pipelines.ecg_pairing import ECG_FILE, EcgPlan, plan_ecg
from medssl.platform.errors import DataError
from medssl.platform.io import (
    atomic_folder,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
)

__all__ = ["SYNTHETIC_NOTE", "PairingSummary", "build_report_pairing", "image_label_array"]

SYNTHETIC_NOTE = (
    "synthetic pairing: images and reports come from different patients; this tests whether "
    "report text can teach the image encoder the label, not clinical grounding"
)
MANIFEST_FILE, PAIRING_FILE = "manifest.csv", "pairing.json"

# ----------------------------------------------------------------------------- the pairing


@dataclass(frozen=True)
class PairingSummary:
    """What `build_report_pairing` wrote, and the counts behind it.

    manifest / pairing_json / ecg_file: the files written (ecg_file None without an ECG).
    reports_*: reports read (non-empty), dropped as empty, and labelled by `report_label`.
    images_*: images of each label in the npz. pairs_*: pairs made of each class.
    ecg_windows_*: windows of each kind in the record; ecg_reused_*: draws that repeated a
    window because the kind ran out (all None without an ECG).
    """

    manifest: Path
    pairing_json: Path
    ecg_file: Path | None
    reports_read: int
    reports_dropped_empty: int
    reports_positive: int
    reports_negative: int
    reports_unused: int
    images_positive: int
    images_negative: int
    pairs_positive: int
    pairs_negative: int
    ecg_windows_abnormal: int | None = None
    ecg_windows_normal: int | None = None
    ecg_reused_abnormal: int | None = None
    ecg_reused_normal: int | None = None


@dataclass(frozen=True)
class _Pair:
    report: Report
    image: int
    label: int


def build_report_pairing(
    images_npz: str | Path,
    reports_archive: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    ecg_source: str | Path | None = None,
    max_pairs: int | None = None,
) -> PairingSummary:
    """Pair labelled chest X-rays with real reports of the same diagnosis (and ECG windows).

    Each report is labelled by `report_label` and used at most once; label-1 images go
    with positive reports, label-0 images with negative ones, both drawn without
    replacement by a seeded shuffle, as many per class as the shorter side allows (classes
    are not balanced). Everything is computed before the first write; each file is replaced
    atomically, `pairing.json` last.

    Args:
        images_npz: a MedMNIST-style npz (`<split>_images` with `<split>_labels`, 0/1).
        reports_archive: an OpenI / IU X-ray report archive (.tgz).
        out_dir: where `manifest.csv`, `pairing.json` (and `ecg.npz`) are written.
        seed: the seed of every shuffle.
        ecg_source: a beat-annotated WFDB record path without extension; its abnormal
            windows go with positive pairs, its normal windows with negative ones.
        max_pairs: at most this many pairs, split between the classes in proportion.

    Returns:
        PairingSummary with the paths written and the counts.

    Raises:
        DataError: an input is missing or unreadable, the npz lacks image/label arrays, or
            no pair can be made.
        ValueError: max_pairs is below 1.
    """
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1 or None; got {max_pairs}")
    images_npz, reports_archive, out_dir = Path(images_npz), Path(reports_archive), Path(out_dir)
    _require_inputs(images_npz, reports_archive, ecg_source)
    image_labels = image_label_array(images_npz)
    corpus = read_report_archive(reports_archive)
    by_label: dict[int | None, list[Report]] = {1: [], 0: [], None: []}
    for report in sorted(corpus.reports, key=lambda r: _natural_key(r.report_id)):
        by_label[None if report.empty else report_label(report)].append(report)
    rng = np.random.default_rng(seed)
    pairs = _draw_pairs(
        by_label, image_labels, _pair_counts(by_label, image_labels, max_pairs), rng
    )
    if not pairs:
        raise DataError(
            f"no pair can be made from {images_npz} and {reports_archive}: "
            f"{len(by_label[1])} pneumonia and {len(by_label[0])} no-acute-disease reports, "
            f"{int((image_labels == 1).sum())} label-1 and {int((image_labels == 0).sum())} "
            "label-0 images"
        )
    ecg = plan_ecg(ecg_source, [p.label for p in pairs], rng) if ecg_source else None
    summary = _summary(out_dir, corpus, by_label, image_labels, pairs, ecg)
    document = _pairing_document(summary, images_npz, reports_archive, corpus, seed, max_pairs)
    document["ecg"] = ecg.document if ecg else None
    rows = _manifest_rows(pairs, _relative(images_npz, out_dir), ecg.rows if ecg else None)
    _write_outputs(out_dir, rows, document, ecg.arrays if ecg else None)
    return summary


def _summary(
    out_dir: Path,
    corpus: ReportCorpus,
    by_label: dict[int | None, list[Report]],
    image_labels: np.ndarray,
    pairs: list[_Pair],
    ecg: EcgPlan | None,
) -> PairingSummary:
    """The counts of a pairing and the paths it is written to."""
    return PairingSummary(
        manifest=out_dir / MANIFEST_FILE,
        pairing_json=out_dir / PAIRING_FILE,
        ecg_file=out_dir / ECG_FILE if ecg else None,
        reports_read=len(corpus.reports),
        reports_dropped_empty=len(corpus.dropped_empty),
        reports_positive=len(by_label[1]),
        reports_negative=len(by_label[0]),
        reports_unused=len(by_label[None]),
        images_positive=int((image_labels == 1).sum()),
        images_negative=int((image_labels == 0).sum()),
        pairs_positive=sum(p.label == 1 for p in pairs),
        pairs_negative=sum(p.label == 0 for p in pairs),
        **(ecg.counts if ecg else {}),
    )


def _draw_pairs(
    by_label: dict[int | None, list[Report]],
    image_labels: np.ndarray,
    counts: dict[int, int],
    rng: np.random.Generator,
) -> list[_Pair]:
    """`counts[c]` pairs of class c: reports and images of label c, each drawn without
    replacement by a seeded shuffle; sorted by report id."""
    pairs: list[_Pair] = []
    for label in (1, 0):
        n = counts[label]
        reports = [by_label[label][i] for i in rng.permutation(len(by_label[label]))[:n]]
        images = rng.permutation(np.flatnonzero(image_labels == label))[:n]
        pairs += [_Pair(r, int(i), label) for r, i in zip(reports, images, strict=True)]
    return sorted(pairs, key=lambda pair: _natural_key(pair.report.report_id))


def _manifest_rows(
    pairs: list[_Pair], image_ref: str, ecg_rows: list[int] | None
) -> list[dict[str, Any]]:
    """One manifest row per pair; `image_ref` is the npz as the manifest names it."""
    rows = []
    for i, pair in enumerate(pairs):
        row: dict[str, Any] = {
            "subject_id": pair.report.report_id,
            "image": f"{image_ref}#{pair.image}",
            "label": pair.label,
            "report_text": pair.report.text,
            "report_source": pair.report.source.rpartition("#")[2],
        }
        if ecg_rows is not None:
            row["ecg"] = f"{ECG_FILE}#{ecg_rows[i]}"
        rows.append(row)
    return rows


def image_label_array(path: Path) -> np.ndarray:
    """The 0/1 label of every image of a MedMNIST-style npz, by global item index (splits in
    train, val, test order, as `<file.npz>#<index>` counts them). Only labels are read.

    Raises:
        DataError: naming the file and the arrays it has, when an images array lacks its
            labels, there is no images array, or a label is not 0/1.
    """
    from medssl.modalities.npz import npz_layout, npz_shapes

    shapes = npz_shapes(path)
    layout = npz_layout(shapes, path)
    missing = [f"{split}_labels" for split, _ in layout if f"{split}_labels" not in shapes]
    if missing:
        raise DataError(
            f"{path} has arrays {sorted(shapes)} but not {', '.join(missing)}; give an npz with "
            "a label array beside each images array (train_images with train_labels)"
        )
    with np.load(path, allow_pickle=False) as npz:
        parts = [np.asarray(npz[f"{split}_labels"]).reshape(n, -1) for split, n in layout]
    labels = np.concatenate(parts)
    if labels.shape[1] != 1 or not np.isin(labels, (0, 1)).all():
        raise DataError(
            f"{path}: labels must be one 0/1 value per image (binary, e.g. pneumonia); found "
            f"shape {labels.shape} with values {np.unique(labels)[:10].tolist()}"
        )
    return labels[:, 0].astype(np.int64)


def _require_inputs(images: Path, reports: Path, ecg: str | Path | None) -> None:
    """DataError naming the first input that does not exist."""
    if not images.is_file():
        raise DataError(f"{images} does not exist; give the MedMNIST npz of chest X-rays")
    if not reports.is_file():
        raise DataError(f"{reports} does not exist; give the IU X-ray report archive (.tgz)")
    if ecg is not None and not (Path(f"{ecg}.hea").is_file() or Path(ecg).is_file()):
        raise DataError(
            f"{ecg}.hea does not exist; give the WFDB record path without its extension"
        )


def _natural_key(text: str) -> list[Any]:
    """Sort key under which "CXR2" comes before "CXR10"."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def _pair_counts(
    by_label: dict[int | None, list[Report]], image_labels: np.ndarray, max_pairs: int | None
) -> dict[int, int]:
    """Pairs per class: the shorter of reports and images, then `max_pairs` split between
    the classes in proportion to what is available."""
    counts = {c: min(len(by_label[c]), int((image_labels == c).sum())) for c in (1, 0)}
    total = counts[1] + counts[0]
    if max_pairs is not None and max_pairs < total:
        positive = round(max_pairs * counts[1] / total)
        counts = {1: positive, 0: max_pairs - positive}
    return counts


def _relative(path: Path, folder: Path) -> str:
    """`path` as the manifest in `folder` should name it: relative to the folder (the image
    manifest resolves cells against its own folder), absolute where no relative path
    exists (another drive)."""
    try:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(folder))).as_posix()
    except ValueError:
        return os.path.abspath(path)


def _pairing_document(
    summary: PairingSummary,
    images: Path,
    reports: Path,
    corpus: ReportCorpus,
    seed: int,
    max_pairs: int | None,
) -> dict[str, Any]:
    """What pairing.json says: the sources, the rule, the counts and the seed."""
    limited_by = {}
    for name, reports_n, images_n, pairs_n in (
        ("positive", summary.reports_positive, summary.images_positive, summary.pairs_positive),
        ("negative", summary.reports_negative, summary.images_negative, summary.pairs_negative),
    ):
        side = "reports" if reports_n <= images_n else "images"
        limited_by[name] = "max_pairs" if pairs_n < min(reports_n, images_n) else side
    return {
        "kind": "synthetic image-report pairing",
        "note": SYNTHETIC_NOTE,
        "seed": seed,
        "max_pairs": max_pairs,
        "images": {
            "file": str(images),
            "labels": {"1": summary.images_positive, "0": summary.images_negative},
            "drawn": "without replacement, by a seeded shuffle of each label's images",
        },
        "reports": {
            "archive": str(reports),
            "read": summary.reports_read,
            "dropped_empty": summary.reports_dropped_empty,
            "problems": [str(problem) for problem in corpus.problems],
            "labelled": {
                "positive": summary.reports_positive,
                "negative": summary.reports_negative,
                "unused": summary.reports_unused,
            },
            "drawn": "each report at most once, by a seeded shuffle of each label's reports",
        },
        "rule": RULE_TEXT,
        "pairs": {
            "total": summary.pairs_positive + summary.pairs_negative,
            "positive": summary.pairs_positive,
            "negative": summary.pairs_negative,
            "limited_by": limited_by,
            "balanced": False,
        },
        "manifest": {
            "file": MANIFEST_FILE,
            "subject_id": "the IU report id: each pair is its own subject, so a split by "
            "subject keeps a report with its image",
            "label": "1: label-1 image with a pneumonia report; 0: label-0 image with a "
            "no-acute-disease report",
        },
    }


def _write_outputs(
    out_dir: Path,
    rows: list[dict[str, Any]],
    document: dict[str, Any],
    ecg_arrays: dict[str, np.ndarray] | None,
) -> None:
    """Write ecg.npz (or remove an earlier pairing's), manifest.csv, then pairing.json. A new
    folder is filled beside its target and renamed into place (it appears whole or not at
    all); in an existing folder each file is replaced atomically."""
    if not out_dir.exists():
        with atomic_folder(out_dir) as staging:
            _write_outputs(staging, rows, document, ecg_arrays)
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if ecg_arrays is not None:

        def write_npz(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **ecg_arrays)  # type: ignore[arg-type]  # numpy stubs: allow_pickle

        atomic_write(out_dir / ECG_FILE, write_npz)
    elif (out_dir / PAIRING_FILE).is_file():
        (out_dir / ECG_FILE).unlink(missing_ok=True)  # an earlier pairing's, not this one's
    atomic_write_text(out_dir / MANIFEST_FILE, buffer.getvalue())
    atomic_write_json(out_dir / PAIRING_FILE, document)
