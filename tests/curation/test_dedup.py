"""Known answers for features, Hamming scan, union-find and near-duplicate grouping."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from covid_cxnet_pipeline.curation.dedup import (
    DedupConfig,
    UnionFind,
    find_duplicate_pairs,
    group_duplicates,
    hamming_pairs,
    hashes_to_words,
)
from covid_cxnet_pipeline.curation.features import (
    FeatureConfig,
    compute_features,
    read_feature_cache,
    trim_borders,
)

from .builders import save_image, synthetic_picture


def test_hamming_pairs_known_answer():
    hashes = ["00", "01", "03", "ff"]  # distances: 0-1:1, 0-2:2, 1-2:1, 0-3:8...
    words = hashes_to_words(hashes)
    rows, cols, dist = hamming_pairs(words, max_distance=2, block_size=2)
    found = sorted(zip(rows.tolist(), cols.tolist(), dist.tolist(), strict=True))
    assert found == [(0, 1, 1), (0, 2, 2), (1, 2, 1)]


def test_hashes_to_words_handles_256_bit_hashes():
    words = hashes_to_words(["f" * 64, "0" * 64])
    assert words.shape == (2, 4)
    assert int(np.bitwise_count(words[0] ^ words[1]).sum()) == 256


def test_union_find_joins_transitively():
    sets = UnionFind()
    sets.union("a", "b")
    sets.union("c", "d")
    sets.union("b", "c")
    sets.add("e")
    groups = sets.groups()
    assert len({groups[x] for x in "abcd"}) == 1
    assert groups["e"] == "e"


def test_trim_borders_removes_uniform_frame():
    gray = np.zeros((20, 30), dtype=np.uint8)
    gray[5:15, 4:26] = (np.arange(22, dtype=np.uint8)[None, :] + 1) * 10
    trimmed = trim_borders(gray, trim_std=1.0, max_fraction=0.3)
    assert trimmed.shape == (10, 22)


@pytest.fixture
def variants(tmp_path):
    """A picture, its edited re-publications, and two unrelated pictures."""
    base = synthetic_picture(1)
    return {
        "original": save_image(base, tmp_path / "original.png"),
        "exact_copy": save_image(base, tmp_path / "copy" / "original.png"),
        "resized_jpeg": save_image(base.resize((120, 144)), tmp_path / "small.jpg", quality=70),
        "border": save_image(ImageOps.expand(base, border=12, fill=0), tmp_path / "border.png"),
        "contrast": save_image(
            Image.eval(base, lambda v: int(30 + 0.75 * v)), tmp_path / "contrast.png"
        ),
        "crop": save_image(base.crop((4, 4, 156, 186)), tmp_path / "crop.png"),
        "other": save_image(synthetic_picture(2), tmp_path / "other.png"),
        "other_too": save_image(synthetic_picture(3), tmp_path / "other_too.png"),
    }


def test_edited_copies_group_with_their_original_and_others_stay_apart(variants, tmp_path):
    index = pd.DataFrame([{"image_id": f"s:{name}", **stored} for name, stored in variants.items()])
    features = compute_features(index, FeatureConfig(), tmp_path / "cache.parquet")
    assert (features["decode_error"] == "").all()
    pairs = find_duplicate_pairs(features, DedupConfig())
    groups = group_duplicates(index, pairs)
    by_name = dict(zip([n.split(":")[1] for n in index["image_id"]], groups, strict=True))
    copies = ["original", "exact_copy", "resized_jpeg", "border", "contrast", "crop"]
    assert {by_name[n] for n in copies} == {"s:border"}  # smallest image_id of the group
    assert by_name["other"] == "s:other"
    assert by_name["other_too"] == "s:other_too"


def test_features_are_cached_by_sha256(variants, tmp_path):
    index = pd.DataFrame([{"image_id": "s:o", **variants["original"]}])
    cache = tmp_path / "cache.parquet"
    first = compute_features(index, FeatureConfig(), cache)
    Image.new("L", (4, 4)).save(variants["original"]["path"])  # same sha256, other pixels
    second = compute_features(index, FeatureConfig(), cache)
    assert second["phash"].tolist() == first["phash"].tolist()  # came from the cache
    assert read_feature_cache(cache, FeatureConfig(phash_size=8)).empty  # other config: miss


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_bar_counts_the_images_to_decode_in_order(variants, tmp_path, capsys, workers):
    index = pd.DataFrame([{"image_id": f"s:{n}", **stored} for n, stored in variants.items()])
    features = compute_features(index, FeatureConfig(), None, workers=workers, progress=True)
    assert features["sha256"].tolist() == index["sha256"].drop_duplicates().tolist()
    err = capsys.readouterr().err
    assert "Image features: 100%" in err
    assert "7/7" in err  # 8 rows, 7 distinct files: the exact copy is decoded once


def test_no_progress_bar_unless_asked(variants, tmp_path, capsys):
    index = pd.DataFrame([{"image_id": "s:o", **variants["original"]}])
    compute_features(index, FeatureConfig(), None)
    assert capsys.readouterr().err == ""
    cache = tmp_path / "cache.parquet"
    compute_features(index, FeatureConfig(), cache)
    compute_features(index, FeatureConfig(), cache, progress=True)  # all cached: no empty bar
    assert capsys.readouterr().err == ""


def test_undecodable_and_missing_files_are_reported_not_raised(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    index = pd.DataFrame(
        {"sha256": ["a" * 64, "b" * 64], "path": [str(broken), str(tmp_path / "none.png")]}
    )
    features = compute_features(index, FeatureConfig(), tmp_path / "cache.parquet")
    assert features["decode_error"].str.len().gt(0).all()
    assert find_duplicate_pairs(features, DedupConfig()).empty


def test_dicom_files_get_features_like_the_same_picture_as_png(tmp_path):
    # 12-bit MONOCHROME1 without window: decoded by stretching min-max, then inverted.
    picture = np.asarray(synthetic_picture(4, size=(48, 32)), dtype=np.uint16)
    stored = picture * 15 + 100
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.set_pixel_data(stored, "MONOCHROME1", 12)
    dicom = tmp_path / "film"  # no extension: found by its DICM marker
    dataset.save_as(dicom, enforce_file_format=True)
    low, high = float(stored.min()), float(stored.max())
    expected = 255 - np.rint((stored - low) * (255.0 / (high - low))).astype(np.uint8)
    png = save_image(Image.fromarray(expected), tmp_path / "film.png")
    index = pd.DataFrame(
        {
            "sha256": [hashlib.sha256(dicom.read_bytes()).hexdigest(), png["sha256"]],
            "path": [str(dicom), png["path"]],
        }
    )
    features = compute_features(index, FeatureConfig(), tmp_path / "cache.parquet")
    assert features["decode_error"].tolist() == ["", ""]
    assert features["decoded_width"].tolist() == [48, 48]
    assert features["decoded_height"].tolist() == [32, 32]
    assert features["phash"].iloc[0] == features["phash"].iloc[1]
    assert features["thumbnail"].iloc[0] == features["thumbnail"].iloc[1]
    assert features["gray_std"].iloc[0] == features["gray_std"].iloc[1] > 0


def test_cache_key_changes_with_the_features_version(monkeypatch):
    from covid_cxnet_pipeline.curation import features

    current = FeatureConfig().key()
    monkeypatch.setattr(features, "FEATURES_VERSION", features.FEATURES_VERSION - 1)
    assert FeatureConfig().key() != current  # rows of the older decoder are recomputed


def test_real_duplicates_from_shared_data_are_grouped(shared_data, tmp_path):
    # Manifest groups dup0005 (Figure1 <-> two GeneralBlockchain copies, re-encoded) and dup0006
    # (GeneralBlockchain copy downscaled 1292 -> 1024), plus an unrelated NIH film.
    files = {
        "dup0005": [
            "mirror/figure1_covid/images/COVID-00022.jpg",
            "mirror/gb_covid_segmentations/images/9C34AF49-E589-44D5-92D3-168B3B04E4A6.jpeg",
            "mirror/gb_ieee8023_bbox/images/9C34AF49-E589-44D5-92D3-168B3B04E4A6.jpeg",
        ],
        "dup0006": [
            "mirror/gb_covid_segmentations/images/cavitating-pneumonia-4-day0-PA.jpg",
            "mirror/gb_ieee8023_bbox/images/cavitating-pneumonia-4-day0-PA.jpg",
        ],
        "alone": ["mirror/darkcovidnet_nih/X-Ray Image DataSet/No_findings/00001568_000.png"],
    }
    rows = []
    for expected, paths in files.items():
        for path in paths:
            full = shared_data / path
            sha = hashlib.sha256(full.read_bytes()).hexdigest()
            rows.append({"image_id": path, "sha256": sha, "path": str(full), "expected": expected})
    index = pd.DataFrame(rows)
    features = compute_features(index, FeatureConfig(), tmp_path / "cache.parquet", workers=2)
    groups = group_duplicates(index, find_duplicate_pairs(features, DedupConfig()))
    assert index.assign(group=groups).groupby("expected")["group"].nunique().eq(1).all()
    assert groups.nunique() == 3
