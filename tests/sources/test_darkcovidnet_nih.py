"""DarkCovidNet layout joined with the NIH label file served by the nih_metadata_txv source."""

from __future__ import annotations

import math

import pytest

SOURCE = "darkcovidnet_nih"
DATASET = "X-Ray Image DataSet/"


@pytest.fixture(scope="module")
def images(listed):
    return listed(SOURCE)[0].set_index("upstream_path", drop=False)


def test_rows_match_the_manifest(images, manifest):
    assert len(images) == 479
    assert images["label"].value_counts().to_dict() == {"normal": 370, "cap": 103, "covid": 6}
    expected = manifest[manifest["source_id"] == SOURCE].set_index("upstream_path")
    assert set(images.index) == set(expected.index)
    assert images["label"].to_dict() == expected["label"].to_dict()
    nih = images.loc[~images.index.str.startswith(DATASET + "Covid-19/"), "patient_id"]
    assert nih.to_dict() == expected.loc[nih.index, "patient_id"].to_dict()


def test_nih_row_joined(images):
    row = images.loc[DATASET + "Pneumonia/00000468_040.png"]
    assert (row["patient_id"], row["age"], row["sex"], row["view"]) == ("468", 31.0, "M", "PA")
    assert (row["finding"], row["label"]) == ("Infiltration|Pneumonia|Pneumothorax", "cap")
    assert row["covid_source"] == "not_covid_source"
    assert "/X-Ray%20Image%20DataSet/Pneumonia/00000468_040.png" in row["url"]


def test_pediatric_nih_patients_by_age(images):
    # SOURCES.md: 95 NIH images of patients aged 4-17
    ages = images["age"]
    assert (ages < 18).sum() == 95
    assert ages[ages < 18].min() == 4.0


def test_covid_folder_is_ieee8023_copies(images):
    covid = images[images.index.str.startswith(DATASET + "Covid-19/")]
    assert len(covid) == 6
    assert set(covid["covid_source"]) == {"cohen_ieee8023"} and set(covid["label"]) == {"covid"}
    assert covid["age"].map(math.isnan).all()


def test_unreachable_label_file_is_an_error(base_sources, mirror_client, mirror_url):
    from covid_cxnet_pipeline.sources.base import get_adapter
    from covid_cxnet_pipeline.sources.protocol import SourceUnavailable

    config = dict(base_sources[SOURCE], nih_labels_url=f"{mirror_url}/nih_metadata_txv/absent.csv")
    with pytest.raises(SourceUnavailable):
        get_adapter(SOURCE, config).list_images(mirror_client(SOURCE))
