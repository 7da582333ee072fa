"""Image maths for chest X-rays: decoding, resizing, enhancement, histogram matching, lung ROI."""

from covid_cxnet_pipeline.imaging.beasf import beasf, beasf_lut
from covid_cxnet_pipeline.imaging.channels import CHANNEL_NAMES, DEFAULT_CHANNELS, stack_channels
from covid_cxnet_pipeline.imaging.decode import (
    ImageDecodeError,
    detect_file_format,
    detect_format,
    load_grayscale,
    read_size,
)
from covid_cxnet_pipeline.imaging.enhance import (
    apply_lut,
    clahe,
    equalize_histogram,
    gray_histogram,
)
from covid_cxnet_pipeline.imaging.histogram_matching import (
    build_reference_histogram,
    match_histogram,
    matching_lut,
)
from covid_cxnet_pipeline.imaging.lung_roi import crop_roi, lung_bbox
from covid_cxnet_pipeline.imaging.masks import (
    assemble_lung_mask,
    fill_holes,
    load_mask,
    postprocess_mask,
)
from covid_cxnet_pipeline.imaging.resize import resize

__all__ = [
    "CHANNEL_NAMES",
    "DEFAULT_CHANNELS",
    "ImageDecodeError",
    "apply_lut",
    "assemble_lung_mask",
    "beasf",
    "beasf_lut",
    "build_reference_histogram",
    "clahe",
    "crop_roi",
    "detect_file_format",
    "detect_format",
    "equalize_histogram",
    "fill_holes",
    "gray_histogram",
    "load_grayscale",
    "load_mask",
    "lung_bbox",
    "match_histogram",
    "matching_lut",
    "postprocess_mask",
    "read_size",
    "resize",
    "stack_channels",
]
