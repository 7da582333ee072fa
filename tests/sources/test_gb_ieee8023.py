"""GeneralBlockchain ieee8023 copies: bounding-box and segmentation layouts, with lung masks."""

from __future__ import annotations

import pytest

from covid_cxnet_pipeline.sources.base import CANDIDATE_COLUMNS, MASK_CANDIDATE_COLUMNS

BBOX = "gb_ieee8023_bbox"
SEGMENTATIONS = "gb_covid_segmentations"


@pytest.mark.parametrize(
    ("source_id", "labels"),
    [
        (BBOX, {"covid": 90, "cap": 71, "normal": 9, "other": 5}),
        (SEGMENTATIONS, {"covid": 53, "cap": 29, "other": 4}),
    ],
)
def test_rows_match_the_manifest(listed, manifest, source_id, labels):
    images = listed(source_id)[0]
    assert tuple(images.columns) == CANDIDATE_COLUMNS
    assert images["label"].value_counts().to_dict() == labels
    expected = manifest[manifest["source_id"] == source_id].set_index("upstream_path")
    got = images.set_index("upstream_path")
    assert set(got.index) == set(expected.index)
    assert got["label"].to_dict() == expected["label"].to_dict()
    assert got["patient_id"].to_dict() == expected["patient_id"].to_dict()
    assert set(got["covid_source"]) == {"cohen_ieee8023"}


def test_known_bbox_rows(listed):
    images = listed(BBOX)[0].set_index("upstream_path")
    first = images.loc[
        "images/auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg"
    ]
    assert (first["patient_id"], first["age"], first["sex"], first["view"]) == (
        "2",
        65.0,
        "M",
        "PA",
    )
    assert first["license"] == "CC BY 4.0"  # blank in metadata: the repository licence
    licensed = images.loc["images/1-s2.0-S0929664620300449-gr2_lrg-a.jpg"]
    assert (licensed["license"], licensed["finding"], licensed["sex"]) == (
        "CC BY-NC-ND",
        "COVID-19",
        "F",
    )
    todo = images.loc["images/3eaf15de91d4ff55e6fb0e04cadb81_jumbo.jpeg"]
    assert (todo["finding"], todo["label"]) == ("todo", "other")
    unlisted = images.loc["images/4-x-day8.jpg"]  # no metadata row upstream
    assert (unlisted["label"], unlisted["finding"], unlisted["patient_id"]) == ("other", "", "")


def test_bbox_copy_has_no_masks(listed):
    assert listed(BBOX)[1].empty


def test_segmentation_masks(listed):
    images, masks = listed(SEGMENTATIONS)
    assert tuple(masks.columns) == MASK_CANDIDATE_COLUMNS
    assert len(masks) == 171
    assert masks["structure"].value_counts().to_dict() == {"right_lung": 86, "left_lung": 85}
    assert set(masks["image_id"]) <= set(images["image_id"])
    both = masks.groupby("image_id")["structure"].agg(set)
    assert (both == {"left_lung", "right_lung"}).sum() == 84
    assert not masks["scale_to_image"].any()


def test_known_mask_crops(listed):
    masks = listed(SEGMENTATIONS)[1]
    image = "images/auntminnie-d-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg"
    crops = masks[masks["image_id"] == f"{SEGMENTATIONS}:{image}"]
    # upstream annotated the right lung twice; both crops are kept with their offsets
    assert sorted(
        zip(crops["structure"], crops["offset_top"], crops["offset_left"], strict=True)
    ) == [
        ("left_lung", 95, 457),
        ("right_lung", 99, 0),
        ("right_lung", 102, 1),
    ]
    assert crops["url"].str.contains("/gb_covid_segmentations/masks/6fac4cff8019").all()


class _StructureClient:
    """A client whose only metadata file is a tiny structure.csv (no network)."""

    source_id = SEGMENTATIONS
    base_url = "http://mirror.test/seg/"

    def __init__(self, structure):
        self.structure = structure

    def url(self, relpath):
        return self.base_url + relpath

    def fetch_metadata(self, relpath):
        assert relpath == "structure.csv"
        return self.structure


@pytest.mark.parametrize("top", ["", "n/a", "nan", "1e999", "-5"])
def test_mask_row_with_a_bad_offset_is_skipped_with_a_warning(tmp_path, base_sources, top, caplog):
    import pandas as pd

    from covid_cxnet_pipeline.sources.base import get_adapter

    structure = tmp_path / "structure.csv"
    structure.write_text(
        "Filename,Template Name,Mask,Top,Left\n"
        f"a.jpg,Left Lung,masks/a_left.png,{top},10\n"
        "a.jpg,Right Lung,masks/a_right.png,12.0,30\n",
        encoding="utf-8",
    )
    adapter = get_adapter(SEGMENTATIONS, base_sources[SEGMENTATIONS])
    images = pd.DataFrame({"image_id": [f"{SEGMENTATIONS}:images/a.jpg"]})
    with caplog.at_level("WARNING"):
        masks = adapter.list_masks(_StructureClient(structure), images)
    assert masks[["structure", "offset_top", "offset_left"]].values.tolist() == [
        ["right_lung", 12, 30]
    ]
    assert "structure.csv row 1" in caplog.text and "a.jpg" in caplog.text
