"""Report text shared by the adapters that pair scans with reports: reading radiology reports
(findings, impression), the WordPiece tokenizer trained on them, and the tokenizer of a local
pretrained language model. Not a modality itself.
"""

from medssl.modalities.text.local_model import LocalModelTokenizer, load_tokenizer
from medssl.modalities.text.report_table import read_report_table
from medssl.modalities.text.reports import (
    Report,
    ReportCorpus,
    clean_report_text,
    parse_report_sections,
    read_report,
    read_report_archive,
)
from medssl.modalities.text.tokenizer import SPECIAL_TOKENS, ReportTokenizer

__all__ = [
    "SPECIAL_TOKENS",
    "LocalModelTokenizer",
    "Report",
    "ReportCorpus",
    "ReportTokenizer",
    "clean_report_text",
    "load_tokenizer",
    "parse_report_sections",
    "read_report",
    "read_report_archive",
    "read_report_table",
]
