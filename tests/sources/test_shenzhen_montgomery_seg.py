"""Shenzhen/Montgomery segmentation layout: TB images and both-lung masks to resize."""

from __future__ import annotations

from pathlib import PurePosixPath

from covid_cxnet_pipeline.sources.base import MASK_CANDIDATE_COLUMNS

SOURCE = "shenzhen_montgomery_seg"


def test_images(listed, manifest):
    images = listed(SOURCE)[0]
    expected = manifest.loc[manifest["source_id"] == SOURCE, "upstream_path"]
    assert set(images["upstream_path"]) == set(expected)
    assert images["upstream_path"].str.startswith("train_png/").sum() == 47  # Shenzhen
    assert images["upstream_path"].str.startswith("val_png/").sum() == 13  # Montgomery
    assert set(images["label"]) == {"other"} and set(images["finding"]) == {"tuberculosis"}
    row = images.set_index("upstream_path").loc["val_png/MCUCXR_0196_1.png"]
    assert (row["patient_id"], row["covid_source"]) == ("MCUCXR_0196", "not_covid_source")


def test_masks_pair_with_images_and_are_resized(listed):
    images, masks = listed(SOURCE)
    assert tuple(masks.columns) == MASK_CANDIDATE_COLUMNS
    assert len(masks) == 60 and masks["image_id"].is_unique
    assert set(masks["image_id"]) == set(images["image_id"])
    assert masks["scale_to_image"].all() and set(masks["structure"]) == {"both_lungs"}
    for image_id, url in zip(masks["image_id"], masks["url"], strict=True):
        assert PurePosixPath(url).name == PurePosixPath(image_id).name
        assert ("/train_masks_png/" in url) == ("train_png/" in image_id)


def test_masks_only_for_wanted_images(listed, mirror_adapter, mirror_client):
    images = listed(SOURCE)[0]
    few = images[images["upstream_path"].str.startswith("val_png/")]
    masks = mirror_adapter(SOURCE).list_masks(mirror_client(SOURCE), few)
    assert set(masks["image_id"]) == set(few["image_id"])
