"""Adapter for GeneralBlockchain's annotated copies of the ieee8023 collection (Aug 2020).

Two repositories share one layout: ``images/`` plus the ieee8023 ``metadata.csv`` of Aug 2020
(laterals and CT already removed). The lung bounding-box copy adds COCO ``annotations/``; the
segmentation copy adds ``structure.csv`` and ``masks/``: one RGBA crop per structure instance,
placed in the image at (``Top``, ``Left``).
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import pandas as pd

from covid_cxnet_pipeline.sources.base import MASK_CANDIDATE_COLUMNS, SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    folder,
    mask_frame,
    read_metadata_csv,
    require_columns,
    safe_relpath,
    setting,
)
from covid_cxnet_pipeline.sources.ieee8023_schema import (
    ieee8023_candidates,
    read_ieee8023_metadata,
)
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

STRUCTURE_COLUMNS = ("Filename", "Template Name", "Mask", "Top", "Left")


@register
class GeneralBlockchainIeee8023(SourceAdapter):
    """GeneralBlockchain COVID-19 chest X-ray lung bounding boxes / lung segmentations datasets.

    Citation: General Blockchain Inc., "COVID-19 Chest X-ray Lung Bounding Boxes Dataset" and
    "COVID-19 Chest X-ray Segmentations Dataset" (github.com/GeneralBlockchain, 2020), built on
    Cohen J. P. et al., "COVID-19 Image Data Collection", arXiv:2003.11597 (2020).
    Licence: repositories CC BY 4.0; per-image licences in ``metadata.csv`` (CC BY-NC-SA,
    CC BY-NC-ND, CC BY, Apache 2.0...), used in each row when given.
    Labels: ieee8023 ``finding`` via ``labels.finding_label``: covid (COVID-19, also with ARDS),
    normal (No Finding), cap (SARS, Pneumocystis, Streptococcus, Klebsiella...), other (ARDS,
    ``todo``, files without a metadata row). ``covid_source`` is ``cohen_ieee8023`` (set
    ``covid_source_from_url: true`` to attribute by each row's url instead).
    Masks (segmentations copy): "Left Lung" / "Right Lung" crops with their offsets.

    Config keys: ``metadata_path``, ``images_dir``, ``license``, ``covid_source_from_url``;
    segmentations only: ``structure_path``, ``mask_structures`` (template name -> structure).
    """

    source_ids: ClassVar[tuple[str, ...]] = ("gb_ieee8023_bbox", "gb_covid_segmentations")
    citation: ClassVar[str] = (
        "General Blockchain Inc. COVID-19 Chest X-ray Lung Bounding Boxes / Segmentations "
        "Datasets, github.com/GeneralBlockchain, 2020; images from Cohen JP, Morrison P, Dao L. "
        "COVID-19 Image Data Collection. arXiv:2003.11597, 2020"
    )
    license: ClassVar[str] = "CC BY 4.0"

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """The images listed under ``images_dir``, joined with the ieee8023 metadata rows."""
        images_dir = folder(setting(self.config, self.source_id, "images_dir"))
        metadata_path = setting(self.config, self.source_id, "metadata_path")
        metadata = read_ieee8023_metadata(client.fetch_metadata(metadata_path), self.source_id)
        return ieee8023_candidates(
            metadata,
            client.list_files(images_dir),
            client,
            source_id=self.source_id,
            default_license=self.configured_license,
            images_dir=images_dir,
            covid_source_from_url=bool(self.config.get("covid_source_from_url", False)),
        )

    def list_masks(self, client: SourceClient, images: pd.DataFrame) -> pd.DataFrame:
        """Lung-mask crops from ``structure.csv`` for the given images (none without the key).

        Args:
            client: gives the mask URLs.
            images: candidate image rows (``list_images`` output) whose masks are wanted.

        Returns:
            One row per lung crop with ``MASK_CANDIDATE_COLUMNS``; an image can have two crops
            of the same structure (upstream annotated one lung twice), the curate step merges.
        """
        structure_path = self.config.get("structure_path")
        if not structure_path:
            return mask_frame([])
        images_dir = folder(setting(self.config, self.source_id, "images_dir"))
        structures = dict(setting(self.config, self.source_id, "mask_structures"))
        table = read_metadata_csv(client.fetch_metadata(structure_path))
        require_columns(
            table,
            STRUCTURE_COLUMNS,
            where=f"{self.source_id}: {structure_path}",
            hint=f"check ingest.sources.{self.source_id}.structure_path",
        )
        wanted = set(images["image_id"])
        rows = []
        for row_number, record in enumerate(table.to_dict(orient="records"), start=1):
            structure = structures.get(record["Template Name"].strip())
            image_path = safe_relpath(images_dir + record["Filename"].strip())
            mask_path = safe_relpath(record["Mask"].strip())
            if structure is None or image_path is None:
                continue
            image_id = f"{self.source_id}:{image_path}"
            if image_id not in wanted:
                continue
            if mask_path is None:
                logger.warning("%s: refusing unsafe mask path %r", self.source_id, record["Mask"])
                continue
            top, left = _offset(record["Top"]), _offset(record["Left"])
            if top is None or left is None:
                # One garbled cell loses one mask crop, not the whole source.
                logger.warning(
                    "%s: %s row %d (%s, %s): offset Top=%r Left=%r is not a pixel count; "
                    "mask skipped",
                    self.source_id,
                    structure_path,
                    row_number,
                    record["Filename"].strip(),
                    record["Template Name"].strip(),
                    record["Top"],
                    record["Left"],
                )
                continue
            rows.append(
                {
                    "image_id": image_id,
                    "source_id": self.source_id,
                    "structure": structure,
                    "url": client.url(mask_path),
                    "offset_top": top,
                    "offset_left": left,
                    "scale_to_image": False,
                    "local_path": "",
                }
            )
        frame = mask_frame(rows)
        logger.info(
            "%s: %d lung-mask crops for %d images",
            self.source_id,
            len(frame),
            frame["image_id"].nunique(),
        )
        return frame[list(MASK_CANDIDATE_COLUMNS)]


def _offset(text: str) -> int | None:
    """A crop offset in pixels from a ``structure.csv`` cell ("22", "22.0"), or None if invalid."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)
