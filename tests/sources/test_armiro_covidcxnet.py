"""armiro/COVID-CXNet adapter: known rows from the real mirrored layout."""

from __future__ import annotations

import math

import pytest

from covid_cxnet_pipeline.sources.armiro_covidcxnet import match_metadata, name_flags
from covid_cxnet_pipeline.sources.base import CANDIDATE_COLUMNS

SOURCE = "armiro_covidcxnet"
FOLDER = "chest_xray_images/covid19/"


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("481p-.jpg", ["pediatric", "normal_looking"]),
        ("296-.jpg", ["normal_looking"]),
        ("766p.jpg", ["pediatric"]),
        ("381.PNG", []),
        ("capp.png", []),  # only numbered names carry flags
    ],
)
def test_name_flags(name, flags):
    assert name_flags(name) == flags


def test_match_metadata_tolerates_case_and_extension_typos():
    files = ["374.PNG", "403.jpeg", "260.jpg", "999.png", "5.jpg", "5.png"]
    rows = ["374.png", "403.jpg", "260.jpg", "5.jpeg", "777.jpg"]
    # "5.jpeg" matches two files by stem: ambiguous, so neither is paired.
    assert match_metadata(files, rows) == {
        "374.PNG": "374.png",
        "403.jpeg": "403.jpg",
        "260.jpg": "260.jpg",
    }


@pytest.fixture(scope="module")
def images(listed):
    return listed(SOURCE)[0].set_index("upstream_path", drop=False)


def test_every_listed_image_is_a_row(images, manifest):
    expected = manifest.loc[manifest["source_id"] == SOURCE, "upstream_path"]
    assert tuple(images.columns) == CANDIDATE_COLUMNS
    assert len(images) == 257
    assert set(images["upstream_path"]) == set(expected)
    assert set(images["label"]) == {"covid"}
    assert images["image_id"].tolist() == [f"{SOURCE}:{p}" for p in images["upstream_path"]]


def test_name_flags_counted(images, manifest):
    flags = images["flags"]
    assert flags.str.contains("normal_looking").sum() == 37
    assert flags.str.contains("pediatric").sum() == 15
    pediatric = manifest.loc[
        (manifest["source_id"] == SOURCE) & (manifest["is_pediatric"] == "true")
    ]
    assert set(images.loc[images["is_pediatric_flag"], "upstream_path"]) == set(
        pediatric["upstream_path"]
    )


def test_row_with_both_flags(images):
    row = images.loc[FOLDER + "481p-.jpg"]
    assert row["flags"] == "pediatric;normal_looking" and row["is_pediatric_flag"]
    assert (row["patient_id"], row["age"], row["sex"], row["view"]) == ("144", 6.0, "M", "AP")
    assert row["covid_source"] == "sirm"
    assert row["url"].endswith("/armiro_covidcxnet/chest_xray_images/covid19/481p-.jpg")


def test_metadata_joined_despite_case_and_extension_mismatch(images):
    upper = images.loc[FOLDER + "381.PNG"]  # row says 381.png
    assert (upper["patient_id"], upper["covid_source"]) == ("67", "papers")
    jpeg = images.loc[FOLDER + "786.jpeg"]  # row says 786.jpg
    assert (jpeg["patient_id"], jpeg["age"], jpeg["covid_source"]) == ("233", 50.0, "radiopaedia")


def test_twitter_row_and_row_without_metadata(images):
    tweet = images.loc[FOLDER + "260.jpg"]
    assert (tweet["patient_id"], tweet["age"], tweet["sex"]) == ("10", 68.0, "F")
    assert tweet["covid_source"] == "twitter" and tweet["finding"] == "COVID-19"
    bare = images.loc[FOLDER + "003.jpeg"]
    assert bare["covid_source"] == "unknown" and bare["patient_id"] == ""
    assert math.isnan(bare["age"]) and bare["license"] == "CC BY 4.0"


def test_covid_source_counts(images):
    # 154 metadata rows, all matched (5 through case/extension tolerance); 103 files without one.
    assert images["covid_source"].value_counts().to_dict() == {
        "unknown": 103,
        "papers": 65,
        "twitter": 45,
        "radiopaedia": 19,
        "eurorad": 13,
        "sirm": 11,
        "figure1": 1,
    }


class _HostileClient:
    """A client whose listing carries hostile and non-image names (no network)."""

    source_id = SOURCE
    base_url = "http://mirror.test/armiro/"

    def __init__(self, metadata):
        self.metadata = metadata

    def url(self, relpath):
        return self.base_url + relpath

    def fetch_metadata(self, relpath):
        return self.metadata

    def list_files(self, prefix=""):
        return [
            FOLDER + "../../../etc/passwd.png",
            "/" + FOLDER + "abs.png",
            FOLDER + "notes.txt",
            FOLDER + "12p.JFIF",
            "elsewhere/13.png",
        ]


def test_hostile_names_are_refused(tmp_path, base_sources):
    from covid_cxnet_pipeline.sources.base import get_adapter

    metadata = tmp_path / "metadata.csv"
    metadata.write_bytes(b"\xef\xbb\xbffilename,patient_id,sex,age,view,label,url\r\n")
    adapter = get_adapter(SOURCE, base_sources[SOURCE])
    images = adapter.list_images(_HostileClient(metadata))
    assert images["upstream_path"].tolist() == [FOLDER + "12p.JFIF"]
    assert images.loc[0, "flags"] == "pediatric" and images.loc[0, "covid_source"] == "unknown"
