"""Report reading: placeholder clean-up, OpenI XML and plain-text sections, archives with bad
members, CSV tables; and the real IU X-ray report archive."""

from __future__ import annotations

import csv
import io
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

from medssl.modalities.base import Problem
from medssl.modalities.text import (
    Report,
    clean_report_text,
    parse_report_sections,
    read_report,
    read_report_archive,
    read_report_table,
)
from medssl.platform.errors import DataError


def openi_xml(
    uid: str | None = "CXR7",
    findings: str = "Heart size normal.",
    impression: str = "No acute disease.",
    images: tuple[str, ...] = ("CXR7_IM-0001-1001",),
) -> str:
    """A report in the OpenI / IU X-ray layout, with only the elements the reader uses
    around the ones it must skip (COMPARISON, INDICATION, captions)."""
    uid_element = f'<uId id="{uid}"/>' if uid is not None else ""
    parents = "".join(
        f'<parentImage id="{i}"><caption>PA and lateral chest x-XXXX</caption></parentImage>'
        for i in images
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<eCitation><meta type="rr"/>{uid_element}<MedlineCitation><Article><Abstract>'
        '<AbstractText Label="COMPARISON">XXXX, XXXX.</AbstractText>'
        '<AbstractText Label="INDICATION">XXXX-year-old with cough</AbstractText>'
        f'<AbstractText Label="FINDINGS">{findings}</AbstractText>'
        f'<AbstractText Label="IMPRESSION">{impression}</AbstractText>'
        f"</Abstract></Article></MedlineCitation>{parents}</eCitation>\n"
    )


# ----------------------------------------------------------------------------- clean-up


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("XXXX", ""),
        ("XX", ""),
        ("XXXX XXXX.", ""),
        ("There are no XXXX of a pleural effusion.", "There are no of a pleural effusion."),
        ("XXXX-XXXX opacity at the left base.", "opacity at the left base."),
        ("Seen on the XX view.", "Seen on the view."),
        ("Normal chest x-XXXX.", "Normal chest."),
        ("Right XXXX-A-XXXX is in XXXX.", "Right is in."),
        ("XXXX, the lungs are clear.", "the lungs are clear."),
        ("Calcified XXXX , XXXX.", "Calcified."),
        ("Calcified XXXX/granulomas.", "Calcified granulomas."),
        ("Compared with 02/010/XXXX.", "Compared with 02/010."),
        ("Pleural ( XXXX ) effusion.", "Pleural effusion."),
        ("Pleural (XXXX, XXXX) effusion (XXXX).", "Pleural effusion."),
        ("No acute bone abnormality..", "No acute bone abnormality."),
        ("Heart   normal.\n\n Lungs clear .", "Heart normal. Lungs clear."),
        ("Shunt from top to XXXX.", "Shunt from top to."),
        # ordinary words with an X, and what is not a placeholder, stay as written
        ("Normal X-ray. The xiphoid is intact. Xray and XRAY.", None),
        ("Atelectasis / airspace disease and/or effusion.", None),
        ("A 1.5 cm nodule; see (prior) exam: stable.", None),
        ("Box-like xx lesion, Exxon.", None),
    ],
)
def test_clean_report_text(raw: str, clean: str | None) -> None:
    expected = raw if clean is None else clean
    assert clean_report_text(raw) == expected
    assert clean_report_text(expected) == expected  # idempotent


def test_report_text_joins_named_sections_and_leaves_empty_ones_out() -> None:
    both = Report("r1", "Heart normal.", "No disease.", "r1.xml")
    assert both.text == "findings: Heart normal. impression: No disease."
    assert Report("r2", "", "No disease.", "r2.xml").text == "impression: No disease."
    assert Report("r3", "XXXX XXXX", "", "r3.xml").text == ""
    assert both.images == ()
    assert not both.empty
    assert Report("r4", "XXXX.", " XX ", "r4.xml").empty


# ----------------------------------------------------------------------------- plain text


def test_sections_by_headings_in_any_case() -> None:
    text = (
        "INDICATION: Cough.\nComparison: None.\n"
        "Findings:\nHeart size is normal.\n  Lungs are clear.\n"
        "IMPRESSION: No acute disease. Recommendation: follow-up.\n"
    )
    assert parse_report_sections(text) == {
        "findings": "Heart size is normal. Lungs are clear.",
        "impression": "No acute disease.",
    }


def test_text_before_the_first_heading_is_findings_without_a_findings_heading() -> None:
    assert parse_report_sections("Lungs are clear.\nConclusion: normal XXXX.") == {
        "findings": "Lungs are clear.",
        "impression": "normal.",
    }
    # with a FINDINGS heading, the preamble ("FINAL REPORT") is not findings
    assert parse_report_sections("FINAL REPORT\nFINDINGS: clear.\nIMPRESSION: normal.") == {
        "findings": "clear.",
        "impression": "normal.",
    }


def test_text_with_no_heading_is_all_findings() -> None:
    sections = parse_report_sections("No impression of effusion. Heart normal.")
    assert sections == {"findings": "No impression of effusion. Heart normal.", "impression": ""}


def test_read_report_txt(tmp_path: Path) -> None:
    path = tmp_path / "study-12.txt"
    path.write_text("FINDINGS: XXXX lungs clear.\nIMPRESSION: Normal chest x-XXXX.\n")
    report = read_report(path)
    assert report == Report("study-12", "lungs clear.", "Normal chest.", str(path))


def test_read_report_txt_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("FINDINGS: Pleural \xe9panchement.".encode("latin-1"))
    with pytest.raises(DataError, match="latin.txt.*UTF-8"):
        read_report(path)


# ----------------------------------------------------------------------------- XML


def test_read_report_openi_xml(tmp_path: Path) -> None:
    path = tmp_path / "7.xml"
    path.write_text(openi_xml(images=("CXR7_IM-0001-1001", "CXR7_IM-0001-2001")))
    report = read_report(path)
    assert report.report_id == "CXR7"
    assert report.findings == "Heart size normal."
    assert report.impression == "No acute disease."
    assert report.images == ("CXR7_IM-0001-1001", "CXR7_IM-0001-2001")
    assert report.source == str(path)


def test_read_report_xml_without_uid_uses_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "report-9.xml"
    path.write_text(openi_xml(uid=None, findings="", impression="XXXX."))
    report = read_report(path)
    assert report.report_id == "report-9"
    assert report.empty


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("<eCitation><uId id='CXR1'/><AbstractText Label='FINDINGS'>cut", "well-formed XML"),
        ("<eCitation><uId id='CXR1'/></eCitation>", "OpenI"),
        (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><r>&a;</r>',
            "DOCTYPE or entities",
        ),
    ],
)
def test_malformed_xml_names_the_file(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "broken.xml"
    path.write_text(content)
    with pytest.raises(DataError, match=says) as info:
        read_report(path)
    assert str(path) in str(info.value)


def test_missing_or_unsupported_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere.xml"):
        read_report(tmp_path / "nowhere.xml")
    with pytest.raises(DataError, match="report.pdf.*xml"):
        read_report(tmp_path / "report.pdf")


# ----------------------------------------------------------------------------- archives


def _tgz(path: Path, members: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


ARCHIVE_MEMBERS = {
    "reports/1.xml": openi_xml("CXR1", "Lungs clear.", "Normal."),
    "reports/2.xml": "<eCitation><AbstractText Label='FINDINGS'>half a file",
    "reports/README": "not a report",
    "reports/3.xml": openi_xml("CXR3", "XXXX", "XXXX."),
    "reports/4.txt": "FINDINGS: Small effusion.\nIMPRESSION: Effusion.",
    "reports/5.xml": openi_xml("CXR5", "Cardiomegaly.", ""),
}


def _check_archive(corpus_path: Path) -> None:
    corpus = read_report_archive(corpus_path)
    assert [r.report_id for r in corpus.reports] == ["CXR1", "4", "CXR5"]  # member order
    assert corpus.reports[0].source == f"{corpus_path}#reports/1.xml"
    assert corpus.reports[1].findings == "Small effusion."
    assert corpus.dropped_empty == ["CXR3"]
    assert len(corpus.problems) == 1
    problem = corpus.problems[0]
    assert isinstance(problem, Problem)
    assert problem.path == f"{corpus_path}#reports/2.xml"
    assert "well-formed XML" in problem.message


def test_tgz_with_a_broken_member_reads_the_rest(tmp_path: Path) -> None:
    _check_archive(_tgz(tmp_path / "reports.tgz", ARCHIVE_MEMBERS))


def test_zip_with_a_broken_member_reads_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "reports.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("reports/", "")
        for name, text in ARCHIVE_MEMBERS.items():
            archive.writestr(name, text)
        archive.writestr("__MACOSX/reports/._1.xml", "resource fork")
    _check_archive(path)


def test_truncated_archive_keeps_what_was_read_and_names_the_archive(tmp_path: Path) -> None:
    words = random.Random(0).choices(["heart", "lung", "clear", "normal", "effusion"], k=4000)
    members = {f"{i}.xml": openi_xml(f"CXR{i}", " ".join(words[i::10])) for i in range(10)}
    path = _tgz(tmp_path / "cut.tgz", members)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    corpus = read_report_archive(path)
    assert 0 < len(corpus.reports) < 10
    assert corpus.problems[-1].path == str(path)
    assert "re-download" in corpus.problems[-1].message


def test_repeated_report_id_keeps_the_first(tmp_path: Path) -> None:
    path = _tgz(tmp_path / "dup.tgz", {"a.xml": openi_xml("CXR1"), "b.xml": openi_xml("CXR1")})
    corpus = read_report_archive(path)
    assert [r.source for r in corpus.reports] == [f"{path}#a.xml"]
    assert "already read" in corpus.problems[0].message


def test_unreadable_archive_is_a_data_error(tmp_path: Path) -> None:
    fake = tmp_path / "reports.tgz"
    fake.write_text("not an archive")
    with pytest.raises(DataError, match="reports.tgz.*not a readable tar"):
        read_report_archive(fake)
    with pytest.raises(DataError, match="absent.zip does not exist"):
        read_report_archive(tmp_path / "absent.zip")
    with pytest.raises(DataError, match="reports.rar"):
        read_report_archive(tmp_path / "reports.rar")


# ----------------------------------------------------------------------------- tables


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_read_report_table(tmp_path: Path) -> None:
    path = _csv(
        tmp_path / "reports.csv",
        [
            {"study": "s1", "find": "Heart XXXX normal.", "impr": "Normal.", "site": "A"},
            {"study": "", "find": "No id here.", "impr": "", "site": "A"},
            {"study": "s3", "find": "", "impr": "XXXX", "site": "B"},
            {"study": "s4", "find": "Effusion.", "impr": "", "site": "B"},
        ],
    )
    corpus = read_report_table(path, "study", {"findings": "find", "impression": "impr"})
    assert [(r.report_id, r.findings, r.impression) for r in corpus.reports] == [
        ("s1", "Heart normal.", "Normal."),
        ("s4", "Effusion.", ""),
    ]
    assert corpus.reports[1].source == f"{path}#row4"
    assert corpus.dropped_empty == ["s3"]
    assert [p.path for p in corpus.problems] == [f"{path}#row2"]

    only_impression = read_report_table(path, "study", {"impression": "impr"})
    assert [r.report_id for r in only_impression.reports] == ["s1"]


def test_read_report_table_unknown_column_lists_the_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path / "reports.csv", [{"study": "s1", "text": "Normal."}])
    with pytest.raises(DataError, match=r"reports.csv has no column\(s\) \['findings'") as info:
        read_report_table(path, "study", {"findings": "findings"})
    assert "['study', 'text']" in str(info.value)
    with pytest.raises(ValueError, match="history"):
        read_report_table(path, "study", {"history": "text"})


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def iu_corpus(shared_data: Path):
    return read_report_archive(shared_data / "image2d" / "cxr" / "NLMCXR_reports.tgz")


@pytest.mark.integration
def test_iu_archive_counts(iu_corpus) -> None:
    assert iu_corpus.problems == []
    assert len(iu_corpus.reports) + len(iu_corpus.dropped_empty) == 3955
    assert len(iu_corpus.reports) == 3927
    assert len(iu_corpus.dropped_empty) == 28
    assert sum(bool(r.findings) for r in iu_corpus.reports) == 3425
    assert sum(bool(r.impression) for r in iu_corpus.reports) == 3921
    assert sum(bool(r.findings and r.impression) for r in iu_corpus.reports) == 3419
    assert sum(len(r.images) for r in iu_corpus.reports) == 7430
    assert "CXR16" in iu_corpus.dropped_empty


@pytest.mark.integration
def test_iu_placeholders_are_gone(iu_corpus) -> None:
    left = [r.report_id for r in iu_corpus.reports if "XX" in r.findings + r.impression]
    assert left == []


@pytest.mark.integration
def test_iu_known_reports(iu_corpus) -> None:
    by_id = {r.report_id: r for r in iu_corpus.reports}
    first = by_id["CXR1"]
    assert first.findings == (
        "The cardiac silhouette and mediastinum size are within normal limits. There is no "
        "pulmonary edema. There is no focal consolidation. There are no of a pleural effusion. "
        "There is no evidence of pneumothorax."
    )
    assert first.impression == "Normal chest."  # "Normal chest x-XXXX." in the file
    assert first.images == ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001")
    assert first.source.endswith("NLMCXR_reports.tgz#ecgen-radiology/1.xml")
    tenth = by_id["CXR10"]
    assert tenth.findings.endswith("right upper lung. No acute bone abnormality.")  # ".." in file
    assert tenth.impression == "No acute cardiopulmonary process."
