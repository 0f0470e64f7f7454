"""The diagnosis rule on report text: affirmed (and hedged) pneumonia mentions are positive,
negated or past ones are not, "no acute disease" without a positive mention is negative."""

from __future__ import annotations

import pytest

from medssl.modalities.text.diagnosis import affirmed_terms, report_label, states_no_acute_disease
from medssl.modalities.text.reports import Report


def _report(impression: str, findings: str = "") -> Report:
    return Report("CXR0", findings, impression, "0.xml")


POSITIVE = [
    "Right lower lobe pneumonia.",
    "Left basilar infiltrates.",
    "Airspace consolidation in the right middle lobe.",
    "Pneumonic process in the lingula.",
    "Bronchopneumonia.",
    "No consolidation. Possible infiltrate in the left base.",
    "No pneumothorax. Right lower lobe pneumonia.",
    "No pleural effusion, but there is a left lower lobe infiltrate.",
    "Left basilar atelectasis versus infiltrate.",
    "No change in the right lower lobe consolidation.",
    "Early pneumonia cannot be excluded.",
    "1. Cardiomegaly. 2. Right middle lobe infiltrate.",
    "Right lower lobe pneumonia. No other acute cardiopulmonary disease.",
    "Without prior comparison, this opacity may represent pneumonia.",
]
NEGATED = [
    "No pneumothorax or consolidation.",
    "No focal consolidation.",
    "Without evidence of pneumonia.",
    "Negative for pneumonia.",
    "Lungs are free of infiltrates.",
    "No evidence of infiltrate.",
    "Lungs are clear of consolidation.",
    "No pneumothorax, pleural effusion, or focal airspace consolidation.",
    "Resolved right lower lobe pneumonia.",
    "The right lower lobe pneumonia has resolved.",
    "Interval resolution of the left basilar consolidation.",
    "History of pneumonia.",
    "Scarring from prior right upper lobe pneumonia.",
]
NEGATIVE = [
    "No acute cardiopulmonary abnormality.",
    "No acute disease.",
    "Normal chest.",
    "Normal chest x-.",
    "No active disease.",
    "No evidence of active disease.",
    "Negative for acute abnormality.",
    "No acute or active cardiac, pulmonary or pleural disease.",
    "1. No acute radiographic cardiopulmonary process.",
    "No acute cardiopulmonary findings.",
]


@pytest.mark.parametrize("impression", POSITIVE)
def test_an_affirmed_mention_in_the_impression_is_positive(impression: str) -> None:
    assert affirmed_terms(impression), impression
    assert report_label(_report(impression)) == 1


@pytest.mark.parametrize("impression", NEGATED)
def test_a_negated_or_past_mention_is_not_affirmed(impression: str) -> None:
    assert affirmed_terms(impression) == []
    assert report_label(_report(impression)) is None  # no normal statement either


@pytest.mark.parametrize("impression", NEGATIVE)
def test_no_acute_disease_without_a_positive_mention_is_negative(impression: str) -> None:
    assert states_no_acute_disease(impression)
    findings = "Heart size normal. No pneumothorax, effusion or focal consolidation."
    assert report_label(_report(impression, findings)) == 0


@pytest.mark.parametrize(
    ("impression", "findings"),
    [
        ("No acute cardiopulmonary abnormality.", "Subtle left basilar infiltrate."),
        ("Stable cardiomegaly.", "Heart is enlarged."),
        ("Left pleural effusion. No other acute abnormality.", ""),
        ("", "Normal chest. No acute disease."),  # no impression: nothing to go by
        ("No acute bony abnormality.", ""),
    ],
)
def test_anything_else_is_unused(impression: str, findings: str) -> None:
    assert report_label(_report(impression, findings)) is None


def test_a_later_clause_is_read_on_its_own() -> None:
    assert affirmed_terms("No consolidation. Possible infiltrate.") == ["infiltrate"]
    assert affirmed_terms("No effusion; right basilar pneumonia") == ["pneumonia"]
    assert affirmed_terms("No effusion or pneumonia") == []
