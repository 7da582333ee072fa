"""Every decoder path of imaging.decode, on tiny files written here, plus a few real X-rays."""

from __future__ import annotations

import csv
import pickle
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from covid_cxnet_pipeline.imaging.decode import (
    ImageDecodeError,
    detect_file_format,
    detect_format,
    load_grayscale,
    read_size,
)

GRAY = np.array([[0, 17, 34], [100, 200, 255]], dtype=np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.rint(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)


# --- PNG ---------------------------------------------------------------------------------------


def test_png_8bit_gray_round_trips(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(GRAY).save(path)
    out = load_grayscale(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, GRAY)


def test_png_16bit_with_12_significant_bits_scales_by_4095(tmp_path):
    # Max 4095 -> 12 significant bits -> divide by 2**12 - 1, not by 65535.
    stored = np.array([[0, 819], [2048, 4095]], dtype=np.uint16)
    path = tmp_path / "twelve_bit.png"
    cv2.imwrite(str(path), stored)
    expected = np.array([[0, 51], [128, 255]])  # 819*255/4095 = 51.0, 2048*255/4095 = 127.53
    np.testing.assert_array_equal(load_grayscale(path), expected)


def _insert_chunk_after_ihdr(path: Path, chunk_type: bytes, data: bytes) -> None:
    """Add a PNG chunk (length, type, data, CRC-32 of type + data) right after IHDR."""
    content = path.read_bytes()
    after_ihdr = 8 + 4 + 4 + 13 + 4  # signature, length, "IHDR", 13 data bytes, CRC
    assert content[12:16] == b"IHDR"
    crc = zlib.crc32(chunk_type + data).to_bytes(4, "big")
    chunk = len(data).to_bytes(4, "big") + chunk_type + data + crc
    path.write_bytes(content[:after_ihdr] + chunk + content[after_ihdr:])


def test_png_16bit_sbit_12_scales_by_4095_whatever_the_brightest_pixel(tmp_path):
    # Peak 2000 alone would suggest 11 bits (/ 2047); sBIT says 12: divide by 4095.
    stored = np.array([[0, 1000], [1500, 2000]], dtype=np.uint16)
    path = tmp_path / "sbit12.png"
    cv2.imwrite(str(path), stored)
    _insert_chunk_after_ihdr(path, b"sBIT", bytes([12]))
    assert np.array_equal(np.asarray(Image.open(path)), stored)  # still a valid PNG
    # 1000*255/4095 = 62.27, 1500*255/4095 = 93.41, 2000*255/4095 = 124.54
    np.testing.assert_array_equal(load_grayscale(path), [[0, 62], [93, 125]])


def test_png_16bit_sbit_with_samples_scaled_to_the_container_per_the_png_spec(tmp_path):
    # The PNG spec asks encoders to scale 12-bit samples to 16 bits (x << 4 | x >> 8) and
    # record sBIT = 12: samples above 4095 mean that layout, divided by 65535; the picture is
    # the same as the low-bit layout of the previous test.
    twelve_bit = np.array([[0, 1000], [1500, 2000]], dtype=np.uint16)
    path = tmp_path / "sbit12_scaled.png"
    cv2.imwrite(str(path), (twelve_bit << 4) | (twelve_bit >> 8))
    _insert_chunk_after_ihdr(path, b"sBIT", bytes([12]))
    np.testing.assert_array_equal(load_grayscale(path), [[0, 62], [93, 125]])


def test_png_16bit_rgb_sbit_uses_the_largest_colour_depth(tmp_path):
    bgr = np.zeros((1, 2, 3), dtype=np.uint16)
    bgr[0, 1] = (1000, 1000, 1000)  # gray: luma = 1000
    path = tmp_path / "rgb_sbit.png"
    cv2.imwrite(str(path), bgr)
    _insert_chunk_after_ihdr(path, b"sBIT", bytes([10, 12, 10]))
    np.testing.assert_array_equal(load_grayscale(path), [[0, 62]])  # / 4095, not / 1023


def test_png_16bit_invalid_sbit_falls_back_to_the_peak(tmp_path):
    stored = np.array([[0, 2047]], dtype=np.uint16)
    path = tmp_path / "bad_sbit.png"
    cv2.imwrite(str(path), stored)
    _insert_chunk_after_ihdr(path, b"sBIT", bytes([17]))  # more than the 16-bit depth
    np.testing.assert_array_equal(load_grayscale(path), [[0, 255]])


def test_png_16bit_full_range_scales_by_65535(tmp_path):
    stored = np.array([[0, 257], [32896, 65535]], dtype=np.uint16)
    path = tmp_path / "sixteen_bit.png"
    cv2.imwrite(str(path), stored)
    # 257*255/65535 = 1, 32896*255/65535 = 128
    np.testing.assert_array_equal(load_grayscale(path), [[0, 1], [128, 255]])


def test_png_16bit_rgb_keeps_low_bits(tmp_path):
    # Pillow would keep only the high byte (all values < 256 -> 0); OpenCV keeps the samples.
    red = np.array([[1000, 4000]], dtype=np.float64)
    bgr = np.zeros((1, 2, 3), dtype=np.uint16)
    bgr[..., 2] = red  # pure red; luma = 0.299 * R
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), bgr)
    luma = np.rint(0.299 * red)  # [299, 1196] -> 11 significant bits -> / 2047
    np.testing.assert_array_equal(load_grayscale(path), np.rint(luma * 255 / 2047))


def test_png_palette_maps_through_the_palette(tmp_path):
    indices = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 255, 255, 255])
    path = tmp_path / "palette.png"
    image.save(path)
    expected = _luma(np.array([[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [255, 255, 255]]]))
    np.testing.assert_array_equal(load_grayscale(path), expected)  # [[0, 76], [150, 255]]


def test_png_palette_with_transparency_goes_black(tmp_path):
    image = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    image.putpalette([255, 255, 255, 255, 255, 255])
    path = tmp_path / "palette_transparent.png"
    image.save(path, transparency=0)
    np.testing.assert_array_equal(load_grayscale(path), [[0, 255]])
    np.testing.assert_array_equal(load_grayscale(path, alpha="drop"), [[255, 255]])


def test_png_rgba_composites_over_black_or_drops_alpha(tmp_path):
    rgba = np.array([[[200, 200, 200, 255], [200, 200, 200, 0], [100, 100, 100, 51]]], np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    # Over black: gray * alpha / 255 -> 200, 0, 100 * 51/255 = 20.
    np.testing.assert_array_equal(load_grayscale(path), [[200, 0, 20]])
    np.testing.assert_array_equal(load_grayscale(path, alpha="drop"), [[200, 200, 100]])


def test_png_gray_alpha(tmp_path):
    la = np.array([[[200, 255], [200, 128]]], dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    np.testing.assert_array_equal(load_grayscale(path), [[200, 100]])  # 200*128/255 = 100.4


def test_rgb_png_uses_bt601_luma(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(load_grayscale(path), [[76, 150, 29, 18]])


def test_unknown_alpha_mode_is_rejected(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(GRAY).save(path)
    with pytest.raises(ValueError, match="alpha must be one of"):
        load_grayscale(path, alpha="white")


# --- JPEG, WebP, BMP ---------------------------------------------------------------------------


def test_jfif_named_jpeg(tmp_path):
    # A flat block survives JPEG exactly (only the DC coefficient is non-zero).
    path = tmp_path / "scan.jfif"
    Image.fromarray(np.full((16, 16), 100, dtype=np.uint8)).save(path, format="JPEG", quality=95)
    out = load_grayscale(path)
    assert out.shape == (16, 16)
    assert np.abs(out.astype(int) - 100).max() <= 1


def test_rgb_jpeg_is_reduced_to_gray(tmp_path):
    path = tmp_path / "colour.jpg"
    Image.fromarray(np.full((16, 16, 3), (120, 120, 120), dtype=np.uint8)).save(path, quality=95)
    out = load_grayscale(path)
    assert out.ndim == 2
    assert np.abs(out.astype(int) - 120).max() <= 1


def test_lossless_webp(tmp_path):
    path = tmp_path / "image.webp"
    Image.fromarray(GRAY).save(path, lossless=True)
    np.testing.assert_array_equal(load_grayscale(path), GRAY)


def test_bmp(tmp_path):
    path = tmp_path / "image.bmp"
    Image.fromarray(GRAY).save(path)
    np.testing.assert_array_equal(load_grayscale(path), GRAY)


def test_format_comes_from_content_not_extension(tmp_path):
    path = tmp_path / "actually_png.jpg"
    Image.fromarray(GRAY).save(path, format="PNG")
    assert detect_file_format(path) == "png"
    np.testing.assert_array_equal(load_grayscale(path), GRAY)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    Image.fromarray(np.full((8, 24), 90, dtype=np.uint8)).save(path, exif=exif, quality=95)
    assert load_grayscale(path).shape == (24, 8)
    assert load_grayscale(path, apply_exif_orientation=False).shape == (8, 24)
    assert read_size(path) == (24, 8)


def test_detect_format_magic_bytes():
    assert detect_format(b"\x89PNG\r\n\x1a\n" + b"\0" * 20) == "png"
    assert detect_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert detect_format(b"RIFF\x10\0\0\0WEBPVP8 ") == "webp"
    assert detect_format(b"BM\0\0") == "bmp"
    assert detect_format(b"\0" * 128 + b"DICM") == "dicom"
    assert detect_format(b"\x02\x00\x03\x00", ".DCM") == "dicom"
    assert detect_format(b"hello world", ".png") is None


# --- DICOM -------------------------------------------------------------------------------------


def _dicom(pixels: np.ndarray, photometric: str, bits_stored: int, **elements) -> Dataset:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.set_pixel_data(pixels, photometric, bits_stored)
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    return dataset


STORED_12BIT = np.array([[0, 1024], [2048, 4095]], dtype=np.uint16)
WINDOWED = {"RescaleSlope": 1, "RescaleIntercept": -1024, "WindowCenter": 0, "WindowWidth": 2049}
# Modality values: stored - 1024 = [[-1024, 0], [1024, 3071]].
# PS3.3 C.11.2.1.2 LINEAR window with c = 0 - 0.5, w = 2049 - 1: x <= c - w/2 = -1024.5 -> y_min,
# x > c + w/2 = 1023.5 -> y_max, else ((x - c)/w + 0.5) * (y_max - y_min) + y_min. The output
# range is the rescaled 12-bit range [-1024, 3071]; mapped to 0..255:
#   -1024 -> (-1023.5/2048 + 0.5) * 255 = 0.06 -> 0;  0 -> (0.5/2048 + 0.5) * 255 = 127.56 -> 128;
#   1024 and 3071 are above the window -> 255.
WINDOWED_EXPECTED = np.array([[0, 128], [255, 255]])


def test_dicom_monochrome2_with_rescale_and_window(tmp_path):
    path = tmp_path / "mono2.dcm"
    _dicom(STORED_12BIT, "MONOCHROME2", 12, **WINDOWED).save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(load_grayscale(path), WINDOWED_EXPECTED)


def test_dicom_monochrome1_is_inverted(tmp_path):
    path = tmp_path / "mono1"  # no extension: found by the DICM marker
    _dicom(STORED_12BIT, "MONOCHROME1", 12, **WINDOWED).save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(load_grayscale(path), 255 - WINDOWED_EXPECTED)


@pytest.mark.parametrize(
    ("photometric", "shape"),
    [("MONOCHROME1", "INVERSE"), ("MONOCHROME1", "IDENTITY"), ("MONOCHROME2", "INVERSE")],
)
def test_dicom_inverse_presentation_lut_is_one_inversion(tmp_path, photometric, shape):
    # PS3.3 C.11.6.1.2: INVERSE accompanies MONOCHROME1; both mean the same single inversion.
    dataset = _dicom(
        np.array([[0, 4095]], dtype=np.uint16), photometric, 12, PresentationLUTShape=shape
    )
    path = tmp_path / "inverse.dcm"
    dataset.save_as(path, enforce_file_format=True)
    # No VOI: min-max stretch to [0, 255], then 255 - x.
    np.testing.assert_array_equal(load_grayscale(path), [[255, 0]])


def test_dicom_invalid_window_falls_back_to_min_max_with_a_warning(tmp_path, caplog):
    elements = {**WINDOWED, "WindowWidth": 0}  # PS3.3 C.11.2.1.2: width must be >= 1
    path = tmp_path / "zero_width.dcm"
    _dicom(STORED_12BIT, "MONOCHROME2", 12, **elements).save_as(path, enforce_file_format=True)
    with caplog.at_level("WARNING", logger="covid_cxnet_pipeline.imaging.decode"):
        out = load_grayscale(path)
    # Modality values [-1024, 0, 1024, 3071] stretched min-max: 1024 * 255/4095 = 63.77 -> 64,
    # 2048 * 255/4095 = 127.53 -> 128.
    np.testing.assert_array_equal(out, [[0, 64], [128, 255]])
    assert str(path) in caplog.text and "Window Width" in caplog.text


def test_dicom_invalid_rescale_falls_back_to_stored_values(tmp_path, caplog):
    path = tmp_path / "bad_slope.dcm"
    _dicom(STORED_12BIT, "MONOCHROME1", 12, **WINDOWED).save_as(path, enforce_file_format=True)
    # pydicom refuses to write a non-numeric DS, so patch the bytes: Rescale Slope "1.0 " -> "abc ".
    good = b"\x28\x00\x53\x10DS\x04\x001.0 "
    content = path.read_bytes()
    assert content.count(good) == 1
    path.write_bytes(content.replace(good, b"\x28\x00\x53\x10DS\x04\x00abc "))
    with caplog.at_level("WARNING", logger="covid_cxnet_pipeline.imaging.decode"):
        out = load_grayscale(path)
    np.testing.assert_array_equal(out, 255 - np.array([[0, 64], [128, 255]]))
    assert str(path) in caplog.text


def test_dicom_voi_lut_sequence_takes_precedence_over_window(tmp_path):
    item = Dataset()
    item.add_new(0x00283002, "US", [4, 0, 8])  # LUT Descriptor: 4 entries, first input 0, 8 bits
    item.add_new(0x00283006, "US", [0, 40, 120, 200])  # LUT Data
    dataset = _dicom(
        np.array([[0, 1], [2, 9]], dtype=np.uint16),
        "MONOCHROME2",
        12,
        VOILUTSequence=Sequence([item]),
        WindowCenter=100,
        WindowWidth=10,
    )
    path = tmp_path / "lut.dcm"
    dataset.save_as(path, enforce_file_format=True)
    # LUT output 0, 40, 120, 200 (9 clips to the last entry) over its range 0..200:
    # 40 * 255/200 = 51, 120 * 255/200 = 153.
    np.testing.assert_array_equal(load_grayscale(path), [[0, 51], [153, 255]])


def test_dicom_without_voi_stretches_modality_values(tmp_path):
    dataset = _dicom(np.array([[100, 300], [500, 600]], dtype=np.uint16), "MONOCHROME2", 12)
    path = tmp_path / "no_preamble.dcm"  # no preamble: found by the .dcm suffix
    dataset.save_as(path, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    # min-max of [100, 600]: 300 -> 102, 500 -> 204.
    np.testing.assert_array_equal(load_grayscale(path), [[0, 102], [204, 255]])
    assert read_size(path) == (2, 2)


def test_dicom_rgb_uses_luma(tmp_path):
    rgb = np.zeros((1, 2, 3), dtype=np.uint8)
    rgb[0, 1] = (0, 255, 0)
    path = tmp_path / "rgb.dcm"
    _dicom(rgb, "RGB", 8).save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(load_grayscale(path), [[0, 150]])


def test_dicom_without_pixel_data_names_the_file(tmp_path):
    dataset = _dicom(STORED_12BIT, "MONOCHROME2", 12)
    del dataset.PixelData
    path = tmp_path / "header_only.dcm"
    dataset.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageDecodeError, match=r"header_only\.dcm.*no pixel data"):
        load_grayscale(path)


def test_truncated_dicom(tmp_path):
    path = tmp_path / "cut.dcm"
    _dicom(np.zeros((64, 64), np.uint16), "MONOCHROME2", 12).save_as(path, enforce_file_format=True)
    path.write_bytes(path.read_bytes()[:-4000])
    with pytest.raises(ImageDecodeError, match=r"cut\.dcm.*truncated or corrupt DICOM"):
        load_grayscale(path)


def test_compressed_dicom_that_cannot_be_decoded(tmp_path):
    dataset = _dicom(np.zeros((4, 4), np.uint16), "MONOCHROME2", 12)
    dataset.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    dataset.PixelData = encapsulate([b"\xff\xd8\xff\xc3 not a real JPEG stream"])
    dataset["PixelData"].VR = "OB"
    path = tmp_path / "compressed.dcm"
    dataset.save_as(path, enforce_file_format=True)
    # Without pylibjpeg/gdcm: "no decoder ... install"; with them: the stream is corrupt.
    with pytest.raises(ImageDecodeError, match=r"compressed\.dcm.*(no decoder|corrupt)"):
        load_grayscale(path)


# --- failures ----------------------------------------------------------------------------------


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(ImageDecodeError, match=r"empty\.png.*empty \(0 bytes\)"):
        load_grayscale(path)


def test_text_named_png_is_unknown_format(tmp_path):
    path = tmp_path / "note.png"
    path.write_text("404: Not Found")
    with pytest.raises(ImageDecodeError, match=r"note\.png.*unknown format.*404"):
        load_grayscale(path)
    with pytest.raises(ImageDecodeError, match="unknown format"):
        read_size(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match=r"absent\.png: file not found"):
        load_grayscale(tmp_path / "absent.png")


@pytest.mark.parametrize(("name", "fmt"), [("cut.png", "PNG"), ("cut.jpg", "JPEG")])
def test_truncated_file(tmp_path, name, fmt):
    rng = np.random.default_rng(0)
    path = tmp_path / name
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(path, format=fmt)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageDecodeError, match=rf"{name}.*truncated or corrupt {fmt}"):
        load_grayscale(path)


def test_corrupt_16bit_png(tmp_path):
    path = tmp_path / "cut16.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 65535, (64, 64), dtype=np.uint16))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageDecodeError, match=r"cut16\.png.*truncated or corrupt"):
        load_grayscale(path)


def test_decompression_bomb_guard_stays_on(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(path)
    # Pillow raises above twice MAX_IMAGE_PIXELS: 100 pixels > 2 * 10.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(ImageDecodeError, match=r"big\.png.*decompression bomb"):
        load_grayscale(path)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        read_size(path)


def test_decode_error_pickles_for_worker_processes(tmp_path):
    error = ImageDecodeError(tmp_path / "x.png", "reason here")
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error)
    assert (clone.path, clone.reason) == (str(tmp_path / "x.png"), "reason here")


def test_read_size_matches_decoded_shape(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((3, 7), dtype=np.uint8)).save(path)
    assert read_size(path) == (3, 7) == load_grayscale(path).shape


# --- real images -------------------------------------------------------------------------------


def test_real_images_of_each_stored_kind(shared_data: Path):
    with (shared_data / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["kind"] == "image"]
    seen: dict[tuple[str, str], dict] = {}
    for row in rows:
        with Image.open(shared_data / row["path"]) as image:
            seen.setdefault((image.format, image.mode), row)
    assert {("PNG", "L"), ("JPEG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB")} <= set(seen)
    for row in seen.values():
        path = shared_data / row["path"]
        gray = load_grayscale(path)
        assert gray.dtype == np.uint8
        assert gray.shape == (int(row["height"]), int(row["width"])) == read_size(path)
        assert gray.std() > 10  # a real radiograph, not a blank decode
