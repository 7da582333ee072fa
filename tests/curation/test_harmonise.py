"""Known answers for label, view, age and patient-id harmonisation."""

import math

import pandas as pd
import pytest

from covid_cxnet_pipeline.curation.harmonise import (
    age_in_years,
    harmonise_index,
    harmonise_label,
    harmonise_view,
    namespaced_patient_id,
)

from .builders import raw_row


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("PA", "PA"),
        ("AP", "AP"),
        ("AP Supine", "AP supine"),
        ("ap_supine", "AP supine"),
        ("AP erect", "AP"),
        ("L", "lateral"),
        ("Lateral", "lateral"),
        ("", "unknown"),
        (None, "unknown"),
        ("Axial", "unknown"),
    ],
)
def test_harmonise_view_known_answers(curate_params, raw, expected):
    assert harmonise_view(raw, curate_params["views"]["map"]) == expected


def test_harmonise_view_rejects_a_map_outside_the_vocabulary():
    with pytest.raises(ValueError, match="curate.views.map"):
        harmonise_view("PA", {"PA": "posterior"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("covid", "covid"), (" Normal", "normal"), ("cap", "cap"), ("other", "other"),
     ("", "other"), (None, "other"), ("COVID-19", "other"), ("pneumonia", "other")],
)  # fmt: skip
def test_harmonise_label_known_answers(raw, expected):
    # Upstream spellings ("COVID-19", "pneumonia") are the source adapters' job, not curation's.
    assert harmonise_label(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(45.0, 45.0), ("045Y", 45.0), ("6M", 0.5), ("52", 52.0), (float("nan"), None),
     ("", None), (414.0, None), (-1, None), ("old", None)],
)  # fmt: skip
def test_age_in_years_known_answers(raw, expected):
    result = age_in_years(raw, max_age=120)
    if expected is None:
        assert math.isnan(result)
    else:
        assert result == pytest.approx(expected)


def test_patient_ids_are_namespaced_and_missing_ones_are_singletons():
    namespaces = {"gb_ieee8023_bbox": "ieee8023"}
    assert namespaced_patient_id("gb_ieee8023_bbox", "36", "x", namespaces) == "ieee8023:36"
    assert namespaced_patient_id("figure1_covid", "C-1", "x", namespaces) == "figure1_covid:C-1"
    assert namespaced_patient_id("armiro", "", "armiro:1.png", namespaces) == "armiro:1.png"
    assert namespaced_patient_id("armiro", float("nan"), "armiro:1.png", namespaces) == (
        "armiro:1.png"
    )


def test_harmonise_index_adds_columns_and_keeps_rows(curate_params):
    stored = {"sha256": "0" * 64, "width": 10, "height": 10, "path": "/x.png"}
    raw = pd.DataFrame(
        [
            raw_row("a:1.png", stored, view="L", age="8Y", patient_id="7", label="other"),
            raw_row("b:2.png", stored, view="AP Supine", age=60.0, label="normal"),
        ]
    )
    frame = harmonise_index(raw, curate_params)
    assert frame["view_harmonised"].tolist() == ["lateral", "AP supine"]
    assert frame["age_years"].tolist() == [8.0, 60.0]
    assert frame["patient_id"].tolist() == ["a:7", "b:2.png"]
    assert frame["label"].tolist() == ["other", "normal"]
    assert frame["finding"].tolist() == ["COVID-19", "COVID-19"]  # raw finding kept
