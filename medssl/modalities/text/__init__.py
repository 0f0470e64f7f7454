"""Report text shared by the adapters that pair scans with reports: reading radiology reports
(findings, impression) and the WordPiece tokenizer trained on them. Not a modality itself.
"""

from medssl.modalities.text.reports import (
    Report,
    ReportCorpus,
    clean_report_text,
    parse_report_sections,
    read_report,
    read_report_archive,
    read_report_table,
)
from medssl.modalities.text.tokenizer import SPECIAL_TOKENS, ReportTokenizer

__all__ = [
    "SPECIAL_TOKENS",
    "Report",
    "ReportCorpus",
    "ReportTokenizer",
    "clean_report_text",
    "parse_report_sections",
    "read_report",
    "read_report_archive",
    "read_report_table",
]
