"""Figure1 and Actualmed COVID-19 collections (agchung): known rows from the real mirror."""

from __future__ import annotations

import math

import pytest

from covid_cxnet_pipeline.sources.base import get_adapter


@pytest.mark.parametrize(
    ("source_id", "labels", "covid_source"),
    [
        ("figure1_covid", {"covid": 33, "other": 15, "normal": 3, "cap": 2}, "figure1"),
        ("actualmed_covid", {"covid": 22, "normal": 13, "other": 10}, "unknown"),
    ],
)
def test_rows_match_the_manifest(listed, manifest, source_id, labels, covid_source):
    images = listed(source_id)[0]
    assert images["label"].value_counts().to_dict() == labels
    expected = manifest[manifest["source_id"] == source_id].set_index("upstream_path")
    got = images.set_index("upstream_path")
    assert set(got.index) == set(expected.index)
    assert got["label"].to_dict() == expected["label"].to_dict()
    # the curator annotated blank findings, e.g. "(blank; notes: Inconclusive)"
    raw_finding = expected["finding"].mask(expected["finding"].str.startswith("(blank"), "")
    assert got["finding"].to_dict() == raw_finding.to_dict()
    assert set(got["covid_source"]) == {covid_source}


def test_figure1_rows(listed):
    images = listed("figure1_covid")[0].set_index("upstream_path")
    second_image = images.loc["images/COVID-00003b.jpg"]
    # "COVID-00003a"/"b" are two images of patient COVID-00003
    assert (second_image["patient_id"], second_image["age"], second_image["sex"]) == (
        "COVID-00003",
        28.0,
        "M",
    )
    assert images.loc["images/COVID-00002.jpg", "age"] == 50.0  # "50+"
    assert images.loc["images/COVID-00001.jpg", "view"] == "AP erect"  # as given; curate harmonises
    png = images.loc["images/COVID-00015a.png"]
    assert (png["label"], png["patient_id"]) == ("covid", "COVID-00015")
    blank = images.loc["images/COVID-00044.jpg"]  # notes say tuberculosis, finding is blank
    assert (blank["label"], blank["finding"]) == ("other", "")
    assert math.isnan(blank["age"])


def test_actualmed_row(listed):
    images = listed("actualmed_covid")[0].set_index("upstream_path")
    row = images.loc["images/CR.1.2.840.113564.1722810170.20200319202613984410.1003000225002.png"]
    assert (row["patient_id"], row["view"], row["label"], row["finding"]) == (
        "ANON91",
        "AP",
        "normal",
        "No finding",
    )


def test_bad_configuration_is_named(base_sources, mirror_client):
    config = dict(base_sources["figure1_covid"], filename_column="imagename")
    with pytest.raises(ValueError, match="exactly one of filename_column"):
        get_adapter("figure1_covid", config).list_images(mirror_client("figure1_covid"))
    config = dict(base_sources["figure1_covid"], covid_source="hospital")
    with pytest.raises(ValueError, match=r"ingest\.sources\.figure1_covid\.covid_source"):
        get_adapter("figure1_covid", config).list_images(mirror_client("figure1_covid"))
