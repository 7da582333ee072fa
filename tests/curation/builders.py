"""Builders for curation tests: tiny synthetic radiograph-like images and raw index rows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from covid_cxnet_pipeline.schema import RAW_INDEX_COLUMNS


def synthetic_picture(seed: int, size: tuple[int, int] = (160, 192)) -> Image.Image:
    """A smooth random gray picture: different seeds give unrelated images."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 6)).astype(np.float32)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    array = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    return Image.fromarray(array, mode="L")


def save_image(image: Image.Image, path: Path, **save_args) -> dict:
    """Save and return the raw-index fields the download step would fill."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_args)
    return {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "width": image.size[0],
        "height": image.size[1],
        "path": str(path),
    }


def raw_row(image_id: str, stored: dict, **fields) -> dict:
    """One raw_index row with neutral defaults, overridden by ``fields``."""
    source_id = fields.pop("source_id", image_id.split(":", maxsplit=1)[0])
    row = {
        "image_id": image_id,
        "source_id": source_id,
        "covid_source": "not_covid_source",
        "url": f"http://127.0.0.1/{image_id}",
        "upstream_path": image_id.split(":", 1)[1],
        "patient_id": "",
        "age": np.nan,
        "sex": "",
        "view": "PA",
        "label": "covid",
        "finding": "COVID-19",
        "license": "CC BY 4.0",
        "is_pediatric_flag": False,
        "flags": "",
        **stored,
    }
    row.update(fields)
    return {column: row[column] for column in RAW_INDEX_COLUMNS}
