"""Known answers for the finding -> label mapping and the age/sex/id normalisers."""

from __future__ import annotations

import math

import pytest

from covid_cxnet_pipeline.schema import RAW_LABELS
from covid_cxnet_pipeline.sources.labels import (
    clean_id,
    finding_label,
    nih_label,
    normalise_sex,
    parse_age,
)


@pytest.mark.parametrize(
    ("finding", "label"),
    [
        # GeneralBlockchain copies (ieee8023 schema of Aug 2020), as found in their metadata.csv
        ("COVID-19", "covid"),
        ("COVID-19, ARDS", "covid"),
        ("No Finding", "normal"),
        ("SARS", "cap"),
        ("Pneumocystis", "cap"),
        ("Streptococcus", "cap"),
        ("Klebsiella", "cap"),
        ("E.Coli", "cap"),
        ("Mycoplasma Bacterial Pneumonia", "cap"),
        ("Bacterial", "cap"),
        ("Pneumonia", "cap"),
        ("Varicella", "cap"),
        ("ARDS", "other"),
        ("todo", "other"),
        ("", "other"),
        # live ieee8023 repository: hierarchical findings
        ("Pneumonia/Viral/COVID-19", "covid"),
        ("Pneumonia/Viral/MERS-CoV", "cap"),
        ("Pneumonia/Bacterial/Chlamydophila", "cap"),
        ("Pneumonia/Fungal/Pneumocystis", "cap"),
        ("Pneumonia/Lipoid", "other"),
        ("Pneumonia/Aspiration", "other"),
        ("Tuberculosis", "other"),
        ("Unknown", "other"),
        # Figure1 / Actualmed
        ("No finding", "normal"),
        (" COVID-19 ", "covid"),
    ],
)
def test_finding_label(finding, label):
    assert finding_label(finding) == label


def test_finding_label_vocabulary():
    assert {finding_label(f) for f in ("COVID-19", "No Finding", "SARS", "x")} == set(RAW_LABELS)


@pytest.mark.parametrize(
    ("labels", "label"),
    [
        ("No Finding", "normal"),
        ("Pneumonia", "cap"),
        ("Infiltration|Pneumonia|Pneumothorax", "cap"),
        ("Effusion|Infiltration", "other"),
        ("No Finding|Effusion", "other"),
    ],
)
def test_nih_label(labels, label):
    assert nih_label(labels) == label


@pytest.mark.parametrize(
    ("cell", "years"),
    [
        ("65", 65.0),
        (" 0.5 ", 0.5),
        ("50+", 50.0),
        ("058Y", 58.0),
        ("6M", 0.5),
        ("early 40s", 42.0),
        ("mid 50s", 55.0),
        ("60s", 65.0),
        (7, 7.0),
    ],
)
def test_parse_age(cell, years):
    assert parse_age(cell) == pytest.approx(years)


@pytest.mark.parametrize("cell", ["", "abc", "414", "-3", None, float("nan")])
def test_parse_age_unknown_or_implausible(cell):
    assert math.isnan(parse_age(cell))


@pytest.mark.parametrize(
    ("cell", "sex"), [("M", "M"), ("male", "M"), ("Female", "F"), ("f", "F"), ("", ""), ("O", "")]
)
def test_normalise_sex(cell, sex):
    assert normalise_sex(cell) == sex


def test_clean_id():
    assert clean_id(" 281.0 ") == "281"
    assert clean_id("COVID-00003") == "COVID-00003"
    assert clean_id("10.5") == "10.5"
