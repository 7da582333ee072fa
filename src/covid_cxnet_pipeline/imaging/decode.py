"""Decode any chest X-ray file the sources ship (PNG, JPEG/JFIF, WebP, BMP, DICOM) to 8-bit grayscale.

The format is detected from the file's first bytes, not its name: upstream collections contain
PNGs named ``.jpg`` and DICOM files without an extension. Every failure raises
:class:`ImageDecodeError`, whose message names the file and the reason.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_SUFFIXES = {".dcm", ".dicom"}
# Pillow format names for each detected format; opening with ``formats=`` stops Pillow from
# guessing another format than the one the magic bytes announced.
_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP"}
_HEADER_BYTES = 132
_EXIF_ORIENTATION_TAG = 0x0112
_ALPHA_MODES = ("black", "drop")


class ImageDecodeError(ValueError):
    """A file could not be decoded to a grayscale image.

    Attributes:
        path: The file that failed.
        reason: What went wrong, in words a user can act on.
    """

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode image {self.path}: {reason}")

    def __reduce__(self):
        # Rebuild from (path, reason) so the error survives pickling across worker processes.
        return (type(self), (self.path, self.reason))


def detect_format(header: bytes, suffix: str = "") -> str | None:
    """Identify an image format from the first bytes of a file.

    Args:
        header: At least the first 132 bytes of the file (fewer if the file is shorter).
        suffix: The file's extension (with dot); only used to accept DICOM files that lack the
            128-byte preamble and ``DICM`` marker, which the standard allows for old files.

    Returns:
        One of ``"png"``, ``"jpeg"``, ``"webp"``, ``"bmp"``, ``"dicom"``, or None when unknown.
    """
    if header.startswith(_PNG_MAGIC):
        return "png"
    if header.startswith(_JPEG_MAGIC):
        return "jpeg"
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "webp"
    if header[:2] == b"BM":
        return "bmp"
    if header[128:132] == b"DICM":
        return "dicom"
    if suffix.lower() in _DICOM_SUFFIXES:
        return "dicom"
    return None


def _read_header(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            header = handle.read(_HEADER_BYTES)
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except OSError as error:
        raise ImageDecodeError(path, f"cannot read the file ({error})") from error
    if not header:
        raise ImageDecodeError(path, "the file is empty (0 bytes); re-download it")
    return header


def detect_file_format(path: str | PathLike[str]) -> str:
    """Identify a file's image format from its content.

    Args:
        path: The file.

    Returns:
        One of ``"png"``, ``"jpeg"``, ``"webp"``, ``"bmp"``, ``"dicom"``.

    Raises:
        ImageDecodeError: The file is missing, empty or of an unknown format.
    """
    file_path = Path(path)
    header = _read_header(file_path)
    image_format = detect_format(header, file_path.suffix)
    if image_format is None:
        raise ImageDecodeError(
            file_path,
            f"unknown format: the content is not PNG, JPEG, WebP, BMP or DICOM "
            f"(starts with {header[:16]!r})",
        )
    if image_format != "dicom" and file_path.suffix.lower() not in _matching_suffixes(image_format):
        logger.debug("%s holds %s data despite its extension", file_path, image_format)
    return image_format


def _matching_suffixes(image_format: str) -> set[str]:
    return {
        "png": {".png"},
        "jpeg": {".jpg", ".jpeg", ".jfif", ".jpe"},
        "webp": {".webp"},
        "bmp": {".bmp", ".dib"},
    }[image_format]


def _to_uint8_by_bit_range(
    values: np.ndarray, significant_bits: int | None = None, container_bits: int = 16
) -> np.ndarray:
    """Scale integer samples stored in a wide container to 0..255 by their significant bits.

    A 16-bit container often holds 10-, 12- or 14-bit data: dividing by 65535 would leave the image
    nearly black. When the file declares its significant bits (PNG ``sBIT``), they decide:
    samples that all fit in them are low-bit data (12-bit data is divided by 4095 whatever its
    brightest pixel); larger samples were scaled to the full container, as the PNG
    specification asks encoders to do, and are divided by ``2**container_bits - 1``. Without a
    declaration, the fallback infers the depth from the largest sample (at least 8 bits), so
    12-bit data whose peak is 4095 is divided by 4095, but one whose peak is 2000 by 2047.
    """
    values = np.clip(values, 0, None)
    peak = int(values.max()) if values.size else 0
    if significant_bits is not None and 0 < significant_bits < container_bits:
        low_bit_data = peak <= 2**significant_bits - 1
        bits = significant_bits if low_bit_data else container_bits
    elif significant_bits is not None and significant_bits == container_bits:
        bits = container_bits
    else:
        bits = max(8, peak.bit_length())
    top = float(2**bits - 1)
    scaled = np.clip(values.astype(np.float64), 0.0, top) * (255.0 / top)
    return np.rint(scaled).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma (the weights Pillow and OpenCV use), kept in float."""
    rgb = rgb.astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _apply_alpha(gray: np.ndarray, alpha: np.ndarray, alpha_max: float, mode: str) -> np.ndarray:
    if mode == "drop":
        return gray
    # Composite over black: transparent pixels become background, as a viewer on black shows.
    return gray.astype(np.float64) * (alpha.astype(np.float64) / alpha_max)


def _pillow_to_gray(image: Image.Image, alpha: str) -> np.ndarray:
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return _pillow_to_gray(image.convert("RGBA" if has_alpha else "RGB"), alpha)
    if mode in ("LA", "La"):
        pixels = np.asarray(image.convert("LA"))
        gray = _apply_alpha(pixels[..., 0], pixels[..., 1], 255.0, alpha)
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    if mode in ("RGBA", "RGBa"):
        pixels = np.asarray(image.convert("RGBA"))
        gray = _apply_alpha(_luma(pixels[..., :3]), pixels[..., 3], 255.0, alpha)
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    if mode.startswith("I;16") or mode == "I":
        return _to_uint8_by_bit_range(np.asarray(image).astype(np.int64))
    if mode == "F":
        return min_max_to_uint8(np.asarray(image, dtype=np.float64))
    # RGB, CMYK, YCbCr, LAB, HSV: go through RGB so the luma weights are the same everywhere.
    return np.clip(np.rint(_luma(np.asarray(image.convert("RGB")))), 0, 255).astype(np.uint8)


def min_max_to_uint8(values: np.ndarray) -> np.ndarray:
    """Stretch any numeric array min-max onto 0..255 (all zeros when it is constant).

    Args:
        values: Numeric array of any shape; computed in float64 whatever its dtype.

    Returns:
        ``uint8`` array of the same shape, rounded half to even.
    """
    values = np.asarray(values, dtype=np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _png_bit_depth(header: bytes) -> int:
    # IHDR is always the first chunk: 8-byte signature, 4-byte length, b"IHDR", width, height,
    # then the bit depth byte at offset 24.
    return header[24] if len(header) > 24 and header[12:16] == b"IHDR" else 8


# PNG colour type -> how many leading sBIT bytes describe the colour (not alpha) channels.
_SBIT_COLOUR_BYTES = {0: 1, 2: 3, 3: 3, 4: 1, 6: 3}


def _png_significant_bits(path: Path) -> int | None:
    """The PNG ``sBIT`` depth of the colour channels (largest of them), or None when absent.

    Chunks are walked from the signature up to the first IDAT (sBIT must precede it), seeking
    over their data, so the pixels are never read here. Each chunk is a 4-byte big-endian
    length, a 4-byte type, the data and a 4-byte CRC.
    """
    with path.open("rb") as handle:
        handle.seek(len(_PNG_MAGIC))
        colour_type = bit_depth = None
        while True:
            head = handle.read(8)
            if len(head) < 8:
                return None
            length, chunk_type = int.from_bytes(head[:4], "big"), head[4:]
            if chunk_type in (b"IDAT", b"IEND"):
                return None
            if chunk_type == b"IHDR":
                data = handle.read(length)
                if len(data) < 10:
                    return None
                bit_depth, colour_type = data[8], data[9]
            elif chunk_type == b"sBIT":
                data = handle.read(length)
                wanted = _SBIT_COLOUR_BYTES.get(colour_type)
                if wanted is None or len(data) < wanted:
                    return None
                bits = max(data[:wanted])
                # A depth outside 1..bit depth is malformed: fall back to the heuristic.
                if bit_depth is None or not 0 < bits <= bit_depth:
                    logger.warning("%s: ignoring invalid PNG sBIT %d", path, bits)
                    return None
                return bits
            else:
                handle.seek(length, 1)
            handle.seek(4, 1)  # CRC


def _decode_png16(path: Path, alpha: str) -> np.ndarray:
    """16-bit PNGs through OpenCV: Pillow reduces 16-bit colour PNGs to their high byte."""
    buffer = np.fromfile(path, dtype=np.uint8)
    pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageDecodeError(path, "truncated or corrupt 16-bit PNG data")
    significant_bits = _png_significant_bits(path)
    if pixels.ndim == 2:
        return _to_uint8_by_bit_range(pixels.astype(np.int64), significant_bits)
    # OpenCV orders colour channels BGR(A).
    gray = _luma(pixels[..., 2::-1])
    if pixels.shape[2] == 4:
        alpha_max = 65535.0 if pixels.dtype == np.uint16 else 255.0
        gray = _apply_alpha(gray, pixels[..., 3], alpha_max, alpha)
    return _to_uint8_by_bit_range(np.rint(gray).astype(np.int64), significant_bits)


def _decode_with_pillow(path: Path, image_format: str, alpha: str, exif: bool) -> np.ndarray:
    header = _read_header(path)
    try:
        # Image.open runs Pillow's decompression-bomb check on the declared size before any
        # pixel is decoded, so the guard also protects the OpenCV 16-bit path below.
        with Image.open(path, formats=[_PILLOW_FORMATS[image_format]]) as opened:
            if image_format == "png" and _png_bit_depth(header) == 16:
                return _decode_png16(path, alpha)
            opened.load()
            image = opened
            if exif and opened.getexif().get(_EXIF_ORIENTATION_TAG, 1) != 1:
                image = ImageOps.exif_transpose(opened)
            return _pillow_to_gray(image, alpha)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(
            path,
            f"decompression bomb guard tripped ({error}); raise PIL.Image.MAX_IMAGE_PIXELS "
            f"only if you trust this file",
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageDecodeError(
            path, f"truncated or corrupt {image_format.upper()} data ({error})"
        ) from error


def _voi_output_range(values: np.ndarray, dataset, applied: str) -> tuple[float, float]:
    """Nominal output range of the VOI stage, so a window maps onto 0..255 as a viewer shows it."""
    from pydicom.pixels import apply_voi, apply_windowing

    if applied == "lut":
        item = dataset.VOILUTSequence[0]
        entries = item.LUTDescriptor[0] or 2**16
        first = item.LUTDescriptor[1]
        # Run the LUT over its whole input domain: pydicom handles the US/OW encodings.
        table = apply_voi(np.arange(first, first + entries, dtype=np.int64), dataset)
        return float(table.min()), float(table.max())
    if applied == "window":
        # Probing far outside any window returns pydicom's own y_min / y_max.
        low, high = apply_windowing(np.array([-1e15, 1e15]), dataset)
        return float(low), float(high)
    return float(values.min()), float(values.max())


def _applied_voi(dataset) -> str:
    sequence = dataset.get("VOILUTSequence")
    if sequence and "LUTDescriptor" in sequence[0] and "LUTData" in sequence[0]:
        return "lut"
    if dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
        return "window"
    return "none"


# What pydicom raises on malformed modality/VOI tags (e.g. Window Width 0, a non-numeric
# Rescale Slope, a LUT Descriptor without its data).
_DICOM_TAG_ERRORS = (ValueError, TypeError, KeyError, AttributeError)


def _modality_and_voi(path: Path, pixels: np.ndarray, dataset) -> tuple[np.ndarray, float, float]:
    """Modality then VOI transform with its output range; min-max over what is usable otherwise.

    Malformed tags leave the pixels themselves intact, so the image stays usable: it is
    stretched over its own range instead, with a warning naming the file and the bad tags.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        values = apply_modality_lut(pixels, dataset)
    except _DICOM_TAG_ERRORS as error:
        logger.warning(
            "%s: invalid Modality LUT / Rescale tags (%s); ignoring them and the VOI tags, "
            "stretching the stored values min-max",
            path,
            error,
        )
        values = np.asarray(pixels, dtype=np.float64)
        return values, float(values.min()), float(values.max())
    try:
        applied = _applied_voi(dataset)
        voi_values = apply_voi_lut(values, dataset)
        low, high = _voi_output_range(voi_values, dataset, applied)
    except _DICOM_TAG_ERRORS as error:
        logger.warning(
            "%s: invalid VOI LUT / window tags (%s); ignoring them, stretching the modality "
            "values min-max",
            path,
            error,
        )
        values = np.asarray(values, dtype=np.float64)
        return values, float(values.min()), float(values.max())
    return np.asarray(voi_values, dtype=np.float64), low, high


def _decode_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut

    try:
        dataset = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as error:
        raise ImageDecodeError(path, f"not a readable DICOM file ({error})") from error
    if "PixelData" not in dataset:
        raise ImageDecodeError(path, "the DICOM file holds no pixel data (PixelData missing)")
    try:
        pixels = dataset.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "unknown")
        if "missing dependencies" in str(error) or isinstance(error, NotImplementedError):
            reason = (
                f"no decoder for the DICOM transfer syntax {syntax} ({error}); install a "
                f"pydicom pixel-data plugin such as pylibjpeg or python-gdcm"
            )
        else:
            reason = f"corrupt compressed DICOM pixel data ({syntax}: {error})"
        raise ImageDecodeError(path, reason) from error
    except (ValueError, AttributeError, EOFError) as error:
        raise ImageDecodeError(path, f"truncated or corrupt DICOM pixel data ({error})") from error

    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1))
    if frames > 1:
        logger.info("%s holds %d frames; using the first", path, frames)
        pixels = pixels[0]
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()

    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        # Stored values -> modality units (Rescale Slope/Intercept or Modality LUT) -> VOI
        # (VOI LUT preferred over window centre/width, as pydicom does by default).
        values, low, high = _modality_and_voi(path, pixels, dataset)
        if high <= low:
            gray = np.zeros(values.shape, dtype=np.uint8)
        else:
            gray = np.rint(np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0)
            gray = gray.astype(np.uint8)
        # MONOCHROME1 shows high values dark. PS3.3 C.11.6.1.2: Presentation LUT Shape INVERSE
        # "shall be used if Photometric Interpretation is MONOCHROME1", so the two describe the
        # same single inversion, never two that cancel out.
        shape = str(dataset.get("PresentationLUTShape", "")).upper()
        inverse = photometric == "MONOCHROME1" or shape == "INVERSE"
        return (255 - gray) if inverse else gray

    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)
    if samples == 3 or pixels.ndim == 3:
        # pydicom converts YBR encodings to RGB by default.
        luma = np.rint(_luma(pixels)).astype(np.int64)
        return _to_uint8_by_bit_range(luma)
    return _to_uint8_by_bit_range(np.asarray(pixels).astype(np.int64))


def load_grayscale(
    path: str | PathLike[str], *, alpha: str = "black", apply_exif_orientation: bool = True
) -> np.ndarray:
    """Decode an image file to a 2-D 8-bit grayscale array.

    Formats are detected from the content: PNG (8- or 16-bit, gray, RGB, palette, with or without
    alpha), JPEG (any extension, e.g. ``.jfif``), WebP, BMP and DICOM. Colour is reduced with
    BT.601 luma. Wide samples (16-bit PNG, DICOM colour) are scaled by their significant bit
    depth: a 16-bit PNG's ``sBIT`` chunk when it has one, else inferred from the largest sample
    (a fallback that depends on each image's brightest pixel). DICOM goes through the Modality LUT, then the VOI
    LUT or window (first one), is mapped onto 0..255 from the VOI output range, and inverted
    once when it is MONOCHROME1 or its Presentation LUT Shape is INVERSE, so bone is bright.
    Malformed modality/VOI tags (e.g. Window Width 0) are ignored with a warning naming the
    file, and the image is stretched min-max instead.

    Args:
        path: The image file.
        alpha: ``"black"`` composites transparent pixels over black; ``"drop"`` ignores alpha.
        apply_exif_orientation: Rotate/flip JPEG/WebP/PNG images as their EXIF orientation tag
            says (16-bit PNGs are decoded without EXIF).

    Returns:
        ``uint8`` array of shape (height, width).

    Raises:
        ImageDecodeError: The file is missing, empty, of unknown format, truncated or corrupt,
            trips Pillow's decompression-bomb guard, or is a DICOM without a usable decoder.
        ValueError: ``alpha`` is not ``"black"`` or ``"drop"``.
    """
    if alpha not in _ALPHA_MODES:
        raise ValueError(f"alpha must be one of {_ALPHA_MODES}, got {alpha!r}")
    file_path = Path(path)
    image_format = detect_file_format(file_path)
    if image_format == "dicom":
        gray = _decode_dicom(file_path)
    else:
        gray = _decode_with_pillow(file_path, image_format, alpha, apply_exif_orientation)
    if gray.ndim != 2 or gray.size == 0:
        raise ImageDecodeError(file_path, f"decoded to an unusable array of shape {gray.shape}")
    return np.ascontiguousarray(gray, dtype=np.uint8)


def read_size(path: str | PathLike[str]) -> tuple[int, int]:
    """Read an image's (height, width) from its header without decoding the pixels.

    Args:
        path: The image file (any format :func:`load_grayscale` accepts).

    Returns:
        ``(height, width)`` as :func:`load_grayscale` would return it (EXIF rotations by 90
        degrees swap the two, except for 16-bit PNGs).

    Raises:
        ImageDecodeError: The file is missing, empty, of unknown format or has a corrupt header.
    """
    file_path = Path(path)
    image_format = detect_file_format(file_path)
    if image_format == "dicom":
        import pydicom

        try:
            dataset = pydicom.dcmread(file_path, stop_before_pixels=True, force=True)
            return int(dataset.Rows), int(dataset.Columns)
        except Exception as error:  # noqa: BLE001 - any pydicom failure means an unusable header
            raise ImageDecodeError(file_path, f"unreadable DICOM header ({error})") from error
    header = _read_header(file_path)
    try:
        with Image.open(file_path, formats=[_PILLOW_FORMATS[image_format]]) as image:
            width, height = image.size
            rotated = image.getexif().get(_EXIF_ORIENTATION_TAG, 1) in (5, 6, 7, 8)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(file_path, f"decompression bomb guard tripped ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(
            file_path, f"corrupt {image_format.upper()} header ({error})"
        ) from error
    if image_format == "png" and _png_bit_depth(header) == 16:
        rotated = False
    return (width, height) if rotated else (height, width)
