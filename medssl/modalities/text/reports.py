"""Radiology reports as text: read findings and impression from OpenI / IU X-ray XML, plain
text, archives of either, or a CSV table, with de-identification placeholders removed.

The OpenI layout is the one of the Indiana University chest X-ray collection (Demner-Fushman
et al., "Preparing a collection of radiology examinations for distribution and retrieval",
JAMIA 2016): one `<eCitation>` per report, sections as `<AbstractText Label="FINDINGS">`,
the report id in `<uId id=...>`, the images it describes as `<parentImage id=...>`.
"""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from medssl.modalities.base import Problem
from medssl.platform.errors import DataError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "Report",
    "ReportCorpus",
    "clean_report_text",
    "parse_report_sections",
    "read_report",
    "read_report_archive",
]

REPORT_SUFFIXES = (".xml", ".txt")
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".zip")
SECTIONS = ("findings", "impression")

# A de-identification placeholder (a run of two or more capital X) with whatever is glued to
# it by letters, digits, apostrophes or hyphens: "XXXX", "x-XXXX", "XXXX-year-old", "XXXXth"
# and "4XXXX" are all fragments of one redacted word, so the whole compound goes. A single X
# ("X-ray") and lower-case x ("xiphoid") never match. A slash separates alternatives, so it
# goes with the placeholder and "XXXX/granulomas" keeps "granulomas".
_PLACEHOLDER = re.compile(r"/?[\w'\u2019-]*X{2,}[\w'\u2019-]*/?")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|<\s*>")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?)\]])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[])[\s,;:.]+")
# Punctuation left next to punctuation by a removal (", ," / ", ." / "..").
_PUNCT_CLUSTER = re.compile(r"[,;:.](?:\s*[,;:.])+")
_LEADING_PUNCT = re.compile(r"^[\s,;:.]+")


def clean_report_text(text: str) -> str:
    """Remove de-identification placeholders from report text and tidy what they leave.

    IU X-ray reports replace identifying (and many harmless) words by "XXXX"; a text
    encoder should not learn that token. Removed: every run of two or more capital X with
    the letters, digits, hyphens and apostrophes glued to it and one slash on either side
    ("XXXX", "XX", "XXXX-XXXX", "x-XXXX", "XXXX-year-old", "XXXX/"); no word is guessed
    back. Kept: words with a single X or a lower-case x ("X-ray", "xiphoid"). Then
    whitespace is collapsed, spaces before punctuation and empty brackets are removed, and
    a cluster of punctuation marks such as ", ," or ", ." becomes one mark ("." when the
    cluster has one). Idempotent.

    Args:
        text: raw section text.

    Returns:
        The cleaned text, stripped; "" when nothing is left.

    Example:
        >>> clean_report_text("There are no XXXX of a pleural effusion , XXXX. Normal X-ray.")
        'There are no of a pleural effusion. Normal X-ray.'
        >>> clean_report_text("XXXX XXXX.")
        ''
    """
    text = _PLACEHOLDER.sub(" ", text)
    text = _EMPTY_BRACKETS.sub(" ", text)
    text = " ".join(text.split())
    text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _PUNCT_CLUSTER.sub(lambda m: "." if "." in m.group(0) else m.group(0)[0], text)
    text = _LEADING_PUNCT.sub("", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class Report:
    """One radiology report: its findings and impression, and where it came from.

    Args:
        report_id: the report's id ("CXR1" for IU X-ray; the file or member stem otherwise).
        findings: the FINDINGS section, cleaned by the readers.
        impression: the IMPRESSION section, cleaned by the readers.
        source: the file it was read from, or `archive.tgz#member` for an archive member,
            or `table.csv#row<n>` for a table row (n counts data rows from 1).
        images: ids of the images the report describes (IU's `parentImage` ids).

    Example:
        >>> r = Report("CXR1", "Heart size normal.", "No acute disease.", "1.xml")
        >>> r.text
        'findings: Heart size normal. impression: No acute disease.'
        >>> Report("CXR2", "XXXX.", "", "2.xml").empty
        True
    """

    report_id: str
    findings: str
    impression: str
    source: str
    images: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The text a report encoder reads: "findings: <findings> impression: <impression>",
        each section cleaned and prefixed by its lower-case name, an empty section left out
        (so "" for an empty report). The names tell the encoder which part is the
        radiologist's conclusion, as in the report itself."""
        parts = []
        for name in SECTIONS:
            section = clean_report_text(getattr(self, name))
            if section:
                parts.append(f"{name}: {section}")
        return " ".join(parts)

    @property
    def empty(self) -> bool:
        """True when both sections are empty after cleaning."""
        return not self.text


@dataclass
class ReportCorpus:
    """What an archive or table held.

    reports: the non-empty reports, in member (or row) order.
    dropped_empty: ids (or member names / row references) of reports with no text left.
    problems: one Problem per member or row that could not be read; the rest were read.
    """

    reports: list[Report] = field(default_factory=list)
    dropped_empty: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.reports)


# ----------------------------------------------------------------------------- one report


def read_report(path: str | Path) -> Report:
    """Read one report file: `.xml` in the OpenI / IU X-ray layout, or `.txt` plain text.

    XML: sections from `<AbstractText Label="FINDINGS">` / `"IMPRESSION"`, the id from
    `<uId id=...>` (else the file stem), image ids from `<parentImage id=...>`. Text:
    sections by headings (see `parse_report_sections`). Both are cleaned with
    `clean_report_text`; an empty report is returned as is (`Report.empty`).

    Args:
        path: the report file.

    Returns:
        The Report, with `source` the path as given.

    Raises:
        DataError: the file is missing, not UTF-8, malformed XML, not in the OpenI layout, or
            of another suffix; the message names the file and the fix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise DataError(
            f"{path}: a report file must be .xml (OpenI / IU X-ray) or .txt; read archives "
            "with read_report_archive and tables with read_report_table"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror}); check the path") from err
    try:
        return _parse_report(data, suffix, str(path), path.stem)
    except ValueError as err:
        raise DataError(f"{path}: {err}") from err


def _parse_report(data: bytes, suffix: str, source: str, stem: str) -> Report:
    """A Report from a file's bytes; ValueError with what is wrong and the fix."""
    if suffix == ".xml":
        return _parse_openi_xml(data, source, stem)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"is not UTF-8 text ({err.reason}); save it as UTF-8") from err
    sections = parse_report_sections(text)
    return Report(stem, sections["findings"], sections["impression"], source)


def _parse_openi_xml(data: bytes, source: str, stem: str) -> Report:
    # Entity declarations are what XML bombs and external-entity reads are made of; OpenI
    # reports have none, so refusing them costs nothing (the standard parser never fetches
    # external entities, but it would expand internal ones).
    if b"<!ENTITY" in data or b"<!DOCTYPE" in data:
        raise ValueError("declares a DOCTYPE or entities, which reports never need; remove them")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise ValueError(f"is not well-formed XML ({err}); re-export or re-download it") from err
    sections = {
        (node.get("Label") or "").strip().lower(): "".join(node.itertext())
        for node in root.iter("AbstractText")
    }
    if not any(name in sections for name in SECTIONS):
        raise ValueError(
            "has no <AbstractText Label=\"FINDINGS\"> or \"IMPRESSION\"; expected the OpenI "
            "(IU X-ray) report layout"
        )
    uid = root.find("uId")
    report_id = (uid.get("id") if uid is not None else None) or stem
    images = tuple(node.get("id", "") for node in root.iter("parentImage") if node.get("id"))
    findings, impression = (clean_report_text(sections.get(name, "")) for name in SECTIONS)
    return Report(report_id.strip(), findings, impression, source, images)


#: Headings a plain-text report may use, and the section each feeds (None: not kept).
HEADINGS: dict[str, str | None] = {
    **dict.fromkeys(("findings",), "findings"),
    **dict.fromkeys(("impression", "impressions", "conclusion", "conclusions"), "impression"),
    **dict.fromkeys(
        ("indication", "indications", "history", "clinical history", "comparison",
         "comparisons", "technique", "examination", "exam", "reason for exam",
         "reason for examination", "recommendation", "recommendations"),
        None,
    ),
}
_HEADING = re.compile(
    r"(?:(?<=\s)|^)("
    + "|".join(sorted((re.escape(h).replace(r"\ ", r"\s+") for h in HEADINGS), key=len)[::-1])
    + r")\s*:",
    re.IGNORECASE,
)


def parse_report_sections(text: str) -> dict[str, str]:
    """Split plain report text into cleaned findings and impression by its headings.

    A heading is a known section name followed by a colon, at the start of a line or after
    whitespace, in any case ("FINDINGS:", "Impression:"). FINDINGS feeds findings;
    IMPRESSION and CONCLUSION feed impression; INDICATION, HISTORY, COMPARISON, TECHNIQUE,
    EXAMINATION and RECOMMENDATION are dropped. Text before the first heading is findings
    when the report has no FINDINGS heading (text with no heading at all is all findings).

    Args:
        text: the whole report.

    Returns:
        {"findings": str, "impression": str}, each cleaned with `clean_report_text`.

    Example:
        >>> parse_report_sections("Indication: cough.\\nFINDINGS: Clear.\\nimpression: Normal.")
        {'findings': 'Clear.', 'impression': 'Normal.'}
        >>> parse_report_sections("Lungs are clear.")
        {'findings': 'Lungs are clear.', 'impression': ''}
    """
    matches = list(_HEADING.finditer(text))
    parts: dict[str, list[str]] = {name: [] for name in SECTIONS}
    targets = [HEADINGS[" ".join(m.group(1).lower().split())] for m in matches]
    if "findings" not in targets:
        parts["findings"].append(text[: matches[0].start()] if matches else text)
    ends = [m.start() for m in matches[1:]] + [len(text)] if matches else []
    for match, target, end in zip(matches, targets, ends, strict=True):
        if target is not None:
            parts[target].append(text[match.end() : end])
    return {name: clean_report_text(" ".join(chunks)) for name, chunks in parts.items()}


# ----------------------------------------------------------------------------- archives


def _archive_members(path: Path) -> Iterator[tuple[str, bytes | None]]:
    """(member name, bytes) of each report-like member in archive order; bytes None when a
    member cannot be extracted. Raises DataError when the archive cannot be opened, and
    OSError / EOFError / tarfile.TarError when it breaks part-way."""
    name = path.name.lower()
    if name.endswith(".zip"):
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as err:
            raise DataError(f"{path} is not a readable zip archive ({err}); re-create it") from err
        with archive:
            for info in archive.infolist():
                if not info.is_dir() and _is_report_member(info.filename):
                    try:
                        yield info.filename, archive.read(info)
                    except (OSError, zipfile.BadZipFile, ValueError):
                        yield info.filename, None
        return
    try:
        tar = tarfile.open(path, mode="r:*")
    except (OSError, tarfile.TarError) as err:
        raise DataError(f"{path} is not a readable tar archive ({err}); re-create it") from err
    with tar:
        for member in tar:
            if member.isfile() and _is_report_member(member.name):
                handle = tar.extractfile(member)
                yield member.name, handle.read() if handle is not None else None


def _is_report_member(name: str) -> bool:
    """Report files, not folders, macOS resource forks or other files in the archive."""
    pure = PurePosixPath(name)
    if pure.name.startswith("._") or "__MACOSX" in pure.parts:
        return False
    return pure.suffix.lower() in REPORT_SUFFIXES


def read_report_archive(path: str | Path) -> ReportCorpus:
    """Read every `.xml` / `.txt` report inside a `.tgz`, `.tar.gz`, `.tar` or `.zip`,
    without extracting anything to disk.

    A member that cannot be read becomes a Problem and reading goes on; an archive that
    breaks part-way (truncated download) keeps what was read before the break and adds one
    Problem naming the archive. A report id met twice keeps the first and adds a Problem.

    Args:
        path: the archive (e.g. IU X-ray's NLMCXR_reports.tgz).

    Returns:
        ReportCorpus with the non-empty reports in member order (`source` is
        `<path>#<member>`), the ids of empty ones, and the problems.

    Raises:
        DataError: the archive is missing, of another suffix, or cannot be opened at all.
    """
    path = Path(path)
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise DataError(
            f"{path}: a report archive must be one of {', '.join(ARCHIVE_SUFFIXES)}; "
            "read single files with read_report"
        )
    if not path.is_file():
        raise DataError(f"{path} does not exist; check the path to the report archive")
    corpus, seen, last = ReportCorpus(), dict[str, str](), None
    try:
        for name, data in _archive_members(path):
            source, member = f"{path}#{name}", PurePosixPath(name)
            try:
                if data is None:
                    raise ValueError("cannot be extracted from the archive")
                report = _parse_report(data, member.suffix.lower(), source, member.stem)
            except ValueError as err:
                corpus.problems.append(Problem(source, str(err)))
                continue
            add_report(corpus, report, seen)
            last = name
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as err:
        where = f"after member {last}" if last else "before its first report"
        corpus.problems.append(
            Problem(str(path), f"the archive breaks {where} ({err}); re-download or re-create it")
        )
    return corpus


def add_report(corpus: ReportCorpus, report: Report, seen: dict[str, str]) -> None:
    """Add `report` to the corpus: as a report, an empty one, or a duplicate-id Problem."""
    if report.report_id in seen:
        first = seen[report.report_id]
        message = f"report id {report.report_id} was already read from {first}; copy skipped"
        corpus.problems.append(Problem(report.source, message))
        return
    seen[report.report_id] = report.source
    if report.empty:
        corpus.dropped_empty.append(report.report_id)
    else:
        corpus.reports.append(report)
