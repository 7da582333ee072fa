"""The NIH label file source: metadata only, readable, no images."""

from __future__ import annotations

import gzip

import pytest

from covid_cxnet_pipeline.sources.base import CANDIDATE_COLUMNS
from covid_cxnet_pipeline.sources.nih_metadata_txv import read_nih_labels


def test_yields_no_images(listed):
    images, masks = listed("nih_metadata_txv")
    assert images.empty and tuple(images.columns) == CANDIDATE_COLUMNS
    assert masks.empty


def test_read_real_label_file(shared_data):
    path = shared_data / "mirror/nih_metadata_txv/torchxrayvision/data/Data_Entry_2017_v2020.csv.gz"
    labels = read_nih_labels(path, "nih_metadata_txv")
    assert len(labels) == 473
    row = labels.loc["00000261_002.png"]
    assert (row["Finding Labels"], row["Patient ID"], row["Patient Age"]) == (
        "Pneumonia",
        "261",
        "39",
    )


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "labels.csv.gz"
    path.write_bytes(gzip.compress(b"Image Index,Finding Labels\na.png,No Finding\n"))
    with pytest.raises(ValueError, match="Patient ID"):
        read_nih_labels(path, "toy")
