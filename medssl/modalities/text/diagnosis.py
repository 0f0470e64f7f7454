"""Which diagnosis a radiology report states, by a transparent rule on its text: pneumonia
(affirmed, hedged mentions included), no acute cardiopulmonary disease, or neither. Negation
follows NegEx's idea (Chapman et al., J Biomed Inform 2001): cue words in the same clause.
"""

from __future__ import annotations

import re

from medssl.modalities.text.reports import Report

#: The positive terms: pneumonia, consolidation, infiltrate and their word forms.
POSITIVE_TERM = re.compile(
    r"\b(?:(?:broncho)?pneumonias?|pneumonic|consolidat(?:ion|ions|ive|ed)"
    r"|infiltrat(?:e|es|ion|ions|ive))\b"
)
# A negation reaches to the end of its clause: sentences, numbered items and contrasts
# ("no effusion, but ... infiltrate") start a new one; commas do not, so "no pneumothorax,
# effusion or consolidation" negates the whole list.
_CLAUSE_BREAK = re.compile(
    r"[.;:!?\n]+(?:\s|$)|\s\d+\.\s|\b(?:but|however|although|though|whereas|otherwise)\b"
)
# Phrases that contain a negation word but negate nothing (NegEx's pseudo-negations): a
# finding "without change" is present, one that "cannot be excluded" is possible (hedged
# findings count, like "possible infiltrate").
_PSEUDO_NEGATION = re.compile(
    r"\b(?:no|without)\s+(?:significant\s+|interval\s+|appreciable\s+)*change"
    r"|\b(?:no|without)\s+(?:prior\s+)?comparisons?"
    r"|\bnot\s+(?:been\s+)?(?:significantly\s+)?changed"
    r"|\b(?:cannot|can\s*not|can't|could\s+not|not)\s+(?:be\s+)?(?:entirely\s+|completely\s+)?"
    r"(?:excluded|exclude|ruled\s+out|rule\s+out)"
    r"|\bdifficult\s+to\s+(?:entirely\s+|completely\s+)?exclude"
)
#: Cues before a term in its clause that negate it.
_NEGATION_BEFORE = re.compile(
    r"\b(?:no|not|without|negative\s+for|free\s+of|clear\s+of|absence\s+of|resolved"
    r"|resolution\s+of|cleared|clearing\s+of|rather\s+than)\b"
)
#: Cues after a term in its clause that negate it ("pneumonia has resolved").
_NEGATION_AFTER = re.compile(
    r"\b(?:resolved|cleared|not\s+(?:seen|identified|present|visualized|evident)"
    r"|(?:is|are)\s+absent|ruled\s+out|excluded)\b"
)
#: A term up to three words after these is history, not a current finding.
_HISTORY_BEFORE = re.compile(
    r"\b(?:history\s+of|prior|previous|previously|old|remote|healed)\s+(?:[\w-]+\s+){0,3}$"
)
#: "No acute cardiopulmonary abnormality", "no active disease", "negative for acute
#: abnormality", "no acute or active cardiac, pulmonary or pleural disease", "normal chest".
_NO_ACUTE_DISEASE = re.compile(
    r"\b(?:no|negative\s+for|without)\s+(?:(?:radiographic\s+)?evidence\s+(?:of|for)\s+)?"
    r"(?:acute|active)\b"
    r"(?:[\s,/]+(?:or|and|acute|active|radiographic|cardiopulmonary|cardiothoracic|pulmonary"
    r"|intrathoracic|thoracic|chest|cardiac|pleural|lung|preoperative|visible|visualized"
    r"|definite))*"
    r"[\s,/]+(?:diseases?|abnormalit(?:y|ies)|process(?:es)?|findings?)\b"
    r"|\b(?:normal|negative)\s+chest\b"
)

#: The rule in words, as pairing.json records it.
RULE_TEXT = {
    "positive (1)": "the IMPRESSION mentions pneumonia, consolidation or infiltrate (any word "
    "form: pneumonic, bronchopneumonia, consolidative, infiltrates ...) not negated in the same "
    "clause; hedged mentions ('possible infiltrate', 'atelectasis versus infiltrate', "
    "'pneumonia cannot be excluded') count",
    "negative (0)": "the IMPRESSION states no acute/active cardiopulmonary disease, abnormality, "
    "process or findings, or 'normal chest', and neither FINDINGS nor IMPRESSION mentions a "
    "positive term un-negated",
    "unused": "anything else (other findings, negated mentions only without a normal "
    "statement, no impression)",
    "negation": "a cue before the term in its clause (no, not, without, negative for, free of, "
    "clear of, absence of, resolved, resolution of, cleared) or after it (resolved, not seen, "
    "ruled out, excluded); clauses end at . ; : numbered items and but/however/although; "
    "history (prior, previous, old, history of ... within 3 words) also excludes a mention; "
    "'no change', 'no comparison', 'cannot be excluded' are not negations",
}


def _clauses(text: str) -> list[str]:
    return [c.strip() for c in _CLAUSE_BREAK.split(text.lower()) if c and c.strip()]


def affirmed_terms(text: str) -> list[str]:
    """The positive terms `text` mentions without negating them (see `RULE_TEXT`).

    Args:
        text: a report section.

    Returns:
        Each affirmed mention, lower case, in reading order ([] when there is none).

    Example:
        >>> affirmed_terms("No pneumothorax or consolidation. Possible infiltrate.")
        ['infiltrate']
    """
    found = []
    for clause in _clauses(text):
        clause = _PSEUDO_NEGATION.sub(" ", clause)
        for match in POSITIVE_TERM.finditer(clause):
            before, after = clause[: match.start()], clause[match.end() :]
            if not (
                _NEGATION_BEFORE.search(before)
                or _NEGATION_AFTER.search(after)
                or _HISTORY_BEFORE.search(before)
            ):
                found.append(match.group(0))
    return found


def states_no_acute_disease(impression: str) -> bool:
    """Whether an impression says "no acute cardiopulmonary disease" or "normal chest" (in
    one of the wordings of `_NO_ACUTE_DISEASE`)."""
    return _NO_ACUTE_DISEASE.search(impression.lower()) is not None


def report_label(report: Report) -> int | None:
    """The diagnosis a report's text states: 1 pneumonia, 0 no acute disease, None neither.

    Args:
        report: a report with `findings` and `impression`.

    Returns:
        1 when the impression affirms pneumonia / consolidation / infiltrate; 0 when it
        states no acute disease and no section affirms one of those; None otherwise.

    Example:
        >>> report_label(Report("CXR9", "", "Right lower lobe pneumonia.", "9.xml"))
        1
    """
    if affirmed_terms(report.impression):
        return 1
    if states_no_acute_disease(report.impression) and not affirmed_terms(report.findings):
        return 0
    return None
