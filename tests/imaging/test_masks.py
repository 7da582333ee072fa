"""Lung-mask assembly for each source layout, and post-processing of predicted masks."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from covid_cxnet_pipeline.imaging.decode import ImageDecodeError, read_size
from covid_cxnet_pipeline.imaging.masks import (
    assemble_lung_mask,
    fill_holes,
    load_mask,
    postprocess_mask,
)


def _save_rgba_crop(path: Path, foreground: np.ndarray, colour=(187, 73, 73)) -> Path:
    # GeneralBlockchain style: coloured lung on opaque black.
    rgba = np.zeros((*foreground.shape, 4), dtype=np.uint8)
    rgba[foreground] = (*colour, 255)
    rgba[~foreground, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(path)
    return path


def test_load_mask_reads_coloured_rgba_and_transparency(tmp_path):
    foreground = np.array([[True, False], [False, True]])
    path = _save_rgba_crop(tmp_path / "crop.png", foreground)
    np.testing.assert_array_equal(load_mask(path), foreground)
    # A fully transparent coloured pixel is not lung.
    rgba = np.array([[[255, 255, 255, 0], [255, 255, 255, 255]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "transparent.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "transparent.png"), [[False, True]])


def test_load_mask_gray_and_threshold(tmp_path):
    Image.fromarray(np.array([[0, 30, 255]], dtype=np.uint8)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png"), [[False, True, True]])
    np.testing.assert_array_equal(
        load_mask(tmp_path / "m.png", foreground_threshold=127), [[False, False, True]]
    )


def test_generalblockchain_crops_are_placed_at_their_offsets(tmp_path):
    left = _save_rgba_crop(tmp_path / "left.png", np.array([[1, 1, 0], [1, 1, 1]], bool))
    right = _save_rgba_crop(tmp_path / "right.png", np.array([[1, 1], [0, 1]], bool), (255, 0, 0))
    # The right crop hangs one column past the 6x8 image: that column is cut off.
    mask = assemble_lung_mask((6, 8), [(left, 1, 1, False), (right, 4, 7, False)])
    expected = np.zeros((6, 8), bool)
    expected[1, 1:3] = True
    expected[2, 1:4] = True
    expected[4, 7] = True
    expected[5, 7] = False  # the crop's (1, 0) is background
    np.testing.assert_array_equal(mask, expected)


def test_shenzhen_mask_is_resized_to_the_image_with_nearest(tmp_path):
    # Mask kept at another aspect ratio than the squashed image (4x2 -> 8x4).
    small = np.array([[0, 255], [255, 0], [0, 0], [255, 255]], dtype=np.uint8)
    Image.fromarray(small).save(tmp_path / "shenzhen.png")
    mask = assemble_lung_mask((8, 4), [(tmp_path / "shenzhen.png", 0, 0, True)])
    expected = np.kron(small > 0, np.ones((2, 2), dtype=bool))
    np.testing.assert_array_equal(mask, expected)


def test_montgomery_left_and_right_masks_are_united(tmp_path):
    left = np.zeros((4, 6), np.uint8)
    left[1:3, 0:2] = 255
    right = np.zeros((4, 6), np.uint8)
    right[1:4, 4:6] = 255
    Image.fromarray(left).save(tmp_path / "left.png")
    Image.fromarray(right).save(tmp_path / "right.png")
    mask = assemble_lung_mask(
        (4, 6), [(tmp_path / "left.png", 0, 0, False), (tmp_path / "right.png", 0, 0, True)]
    )
    np.testing.assert_array_equal(mask, (left > 0) | (right > 0))


def test_assembly_errors(tmp_path):
    Image.fromarray(np.full((2, 2), 255, np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ValueError, match="at least one mask file"):
        assemble_lung_mask((4, 4), [])
    with pytest.raises(ValueError, match=r"m\.png.*entirely outside"):
        assemble_lung_mask((4, 4), [(tmp_path / "m.png", 10, 0, False)])
    with pytest.raises(ValueError, match="cannot have an offset"):
        assemble_lung_mask((4, 4), [(tmp_path / "m.png", 1, 0, True)])
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ImageDecodeError, match=r"bad\.png"):
        assemble_lung_mask((4, 4), [(tmp_path / "bad.png", 0, 0, False)])


# A 7x9 probability map with three blobs: 6 pixels (left), 4 pixels (right), 1 pixel (speck).
PROBS = np.zeros((7, 9))
PROBS[1:4, 1:3] = 0.9
PROBS[1:3, 6:8] = 0.7
PROBS[5, 5] = 0.95
PROBS[6, 0] = 0.4  # below threshold


def test_postprocess_keeps_the_two_largest_components():
    mask = postprocess_mask(PROBS, threshold=0.5, keep_components=2)
    expected = np.zeros((7, 9), bool)
    expected[1:4, 1:3] = True
    expected[1:3, 6:8] = True
    np.testing.assert_array_equal(mask, expected)
    assert postprocess_mask(PROBS, 0.5, keep_components=None).sum() == 6 + 4 + 1
    assert postprocess_mask(PROBS, 0.35, keep_components=None).sum() == 6 + 4 + 1 + 1
    # Threshold is inclusive: a pixel at exactly 0.7 is kept.
    assert postprocess_mask(PROBS, 0.7, keep_components=None).sum() == 6 + 4 + 1


def test_postprocess_min_component_fraction_drops_specks():
    # 63 pixels: the 1-pixel speck is 1.6 %, below 2 %; the 4-pixel blob (6.3 %) stays.
    mask = postprocess_mask(PROBS, 0.5, keep_components=None, min_component_fraction=0.02)
    assert mask.sum() == 10 and not mask[5, 5]


def test_postprocess_fills_holes_and_dilates():
    ring = np.zeros((7, 7))
    ring[1:6, 1:6] = 1.0
    ring[3, 3] = 0.0  # a hole, e.g. a consolidation the U-Net missed
    filled = postprocess_mask(ring, keep_components=1)
    assert filled[3, 3] and filled.sum() == 25
    assert not postprocess_mask(ring, keep_components=1, fill_holes_inside=False)[3, 3]
    dot = np.zeros((5, 5))
    dot[2, 2] = 1.0
    # Radius 1: OpenCV's 3x3 ellipse is a cross.
    cross = np.array(
        [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]],
        dtype=bool,
    )
    np.testing.assert_array_equal(postprocess_mask(dot, dilation_px=1), cross)


def test_fill_holes_leaves_border_connected_background():
    ring = np.zeros((5, 5), bool)
    ring[1:4, 1:4] = True
    ring[2, 2] = False  # enclosed on all four sides -> a hole
    assert fill_holes(ring)[2, 2]
    open_ring = ring.copy()
    open_ring[2, 3] = False  # (2, 2) now reaches the background column 4: not a hole
    np.testing.assert_array_equal(fill_holes(open_ring), open_ring)


def test_postprocess_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        postprocess_mask(np.zeros((2, 2, 1)))
    with pytest.raises(ValueError, match="dilation_px"):
        postprocess_mask(np.zeros((2, 2)), dilation_px=-1)


def test_real_masks_of_each_layout(shared_data: Path):
    mirror = shared_data / "mirror"
    crops = defaultdict(list)
    structure = mirror / "gb_covid_segmentations" / "structure.csv"
    with structure.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            crops[row["Filename"]].append(
                (
                    mirror / "gb_covid_segmentations" / row["Mask"],
                    int(row["Top"]),
                    int(row["Left"]),
                    False,
                )
            )
    image_name, gb_files = next(
        (name, files)
        for name, files in crops.items()
        if len(files) == 2 and (mirror / "gb_covid_segmentations" / "images" / name).is_file()
    )
    shenzhen = sorted((mirror / "shenzhen_montgomery_seg" / "train_png").glob("*.png"))[0]
    cases = [
        (mirror / "gb_covid_segmentations" / "images" / image_name, gb_files),
        (shenzhen, [(shenzhen.parent.parent / "train_masks_png" / shenzhen.name, 0, 0, True)]),
    ]
    for image_path, mask_files in cases:
        shape = read_size(image_path)
        mask = assemble_lung_mask(shape, mask_files)
        assert mask.shape == shape
        assert 0.1 < mask.mean() < 0.5
        count, _ = cv2.connectedComponents(mask.astype(np.uint8))
        assert count - 1 >= 2  # two lungs
