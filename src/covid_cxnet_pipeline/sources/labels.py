"""Map upstream findings, ages and sexes onto the raw index vocabulary (``schema.RAW_LABELS``).

The finding tables follow ../shared/data/SOURCES.md ("Label mapping"): COVID-19 anywhere in a
finding wins; "No Finding" is normal; bacterial, viral and fungal pneumonias are community-acquired
pneumonia (``cap``); ARDS, lipoid or aspiration pneumonia, tuberculosis, "Unknown", ``todo`` and
blanks are ``other``. They are the definition of the labels, not a tuning knob, so they live here.
"""

from __future__ import annotations

import math
import re

# Tokens of an ieee8023-style finding that make it community-acquired pneumonia. The Aug 2020
# schema writes one organism ("Streptococcus", "Mycoplasma Bacterial Pneumonia"); the live
# ieee8023 repository writes a path ("Pneumonia/Bacterial/Streptococcus").
CAP_TOKENS = frozenset(
    {
        "pneumonia",
        "bacterial",
        "viral",
        "fungal",
        "sars",
        "mers",
        "mers-cov",
        "pneumocystis",
        "streptococcus",
        "klebsiella",
        "legionella",
        "mycoplasma",
        "e.coli",
        "chlamydophila",
        "influenza",
        "h1n1",
        "varicella",
        "herpes",
        "nocardia",
        "staphylococcus",
        "mrsa",
        "aspergillosis",
    }
)
# Tokens that make a finding ``other`` even when it also says "Pneumonia" (checked before
# CAP_TOKENS): "Pneumonia/Lipoid" and "Pneumonia/Aspiration" are not infections acquired in the
# community, and ``todo`` rows are uncurated.
OTHER_TOKENS = frozenset({"ards", "lipoid", "aspiration", "tuberculosis", "unknown", "todo"})
COVID_TOKENS = frozenset({"covid-19", "covid19", "sars-cov-2", "covid"})
NORMAL_FINDINGS = frozenset({"no finding", "no findings", "normal"})

_TOKEN = re.compile(r"[a-z0-9]+(?:[.\-][a-z0-9]+)*")
_NUMBER_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([ymwd])?\s*\+?$")
_DECADE_AGE = re.compile(r"^(early|mid|late)?[\s-]*(\d)0s$")
_DECADE_OFFSET = {"early": 2, "mid": 5, "late": 8, None: 5}
_UNIT_YEARS = {None: 1.0, "y": 1.0, "m": 1 / 12, "w": 7 / 365.25, "d": 1 / 365.25}
# Ages above this are data-entry errors (the 2017 NIH file had a few 3-digit ages).
MAX_PLAUSIBLE_AGE = 120.0


def finding_label(finding: str) -> str:
    """The raw label of an ieee8023, GeneralBlockchain, Figure1 or Actualmed finding.

    Args:
        finding: the upstream ``finding`` cell, e.g. "COVID-19, ARDS", "Pneumonia/Viral/SARS",
            "No finding", "todo" or "".

    Returns:
        "covid", "normal", "cap" or "other".
    """
    text = finding.strip().lower()
    tokens = set(_TOKEN.findall(text))
    if tokens & COVID_TOKENS:
        return "covid"
    if text in NORMAL_FINDINGS:
        return "normal"
    if tokens & OTHER_TOKENS:
        return "other"
    if tokens & CAP_TOKENS:
        return "cap"
    return "other"


def nih_label(finding_labels: str) -> str:
    """The raw label of an NIH ChestX-ray14 ``Finding Labels`` cell ("A|B|C").

    "No Finding" is normal; any label list containing "Pneumonia" is ``cap`` (co-labels such as
    Infiltration or Effusion are common and do not change that); everything else is ``other``.
    """
    labels = {label.strip().lower() for label in finding_labels.split("|")}
    if labels == {"no finding"}:
        return "normal"
    if "pneumonia" in labels:
        return "cap"
    return "other"


def parse_age(value: str | float | int | None) -> float:
    """Age in years from an upstream cell, NaN when absent or implausible.

    Understands plain numbers ("65", "0.5"), lower bounds ("50+" -> 50), DICOM-style units
    ("058Y", "6M", "10D") and decades ("early 40s" -> 42, "mid 50s" -> 55, "60s" -> 65).

    Args:
        value: the upstream age cell.

    Returns:
        Age in years as a float, or NaN.
    """
    if value is None:
        return math.nan
    if isinstance(value, int | float):
        age = float(value)
    else:
        text = value.strip().lower()
        number = _NUMBER_AGE.match(text)
        decade = _DECADE_AGE.match(text)
        if number:
            age = float(number.group(1)) * _UNIT_YEARS[number.group(2)]
        elif decade:
            age = 10.0 * int(decade.group(2)) + _DECADE_OFFSET[decade.group(1)]
        else:
            return math.nan
    if math.isnan(age) or age < 0 or age > MAX_PLAUSIBLE_AGE:
        return math.nan
    return age


def normalise_sex(value: str) -> str:
    """ "M", "F" or "" from upstream spellings ("M", "male", "F", "Female", blank)."""
    text = value.strip().lower()
    if text in ("m", "male", "man"):
        return "M"
    if text in ("f", "female", "woman"):
        return "F"
    return ""


def clean_id(value: str) -> str:
    """An upstream identifier as text: stripped, without the ".0" a float round-trip adds."""
    text = value.strip()
    return text[:-2] if re.fullmatch(r"\d+\.0", text) else text
