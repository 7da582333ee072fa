"""Adapter for the Shenzhen/Montgomery lung segmentation layout (asiskumarroy/Semantic-segmentation).

``train_png/`` + ``train_masks_png/`` hold Shenzhen images and both-lung masks, ``val_png/`` +
``val_masks_png/`` Montgomery ones, under the NLM names ``<SET>_<nnnn>_<0|1>.png`` (``_1`` =
tuberculosis). The uploader squashed the Shenzhen images to a square but kept the masks at the
original aspect ratio, so every mask is marked to be resized to its image.
"""

from __future__ import annotations

import logging
import re
from pathlib import PurePosixPath
from typing import ClassVar

import pandas as pd

from covid_cxnet_pipeline.sources.attribution import NOT_COVID_SOURCE
from covid_cxnet_pipeline.sources.base import SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    candidate_frame,
    candidate_row,
    folder,
    image_files,
    mask_frame,
    setting,
)
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

# "CHNCXR_0601_1": patient id, then the NLM tuberculosis label.
_NLM_STEM = re.compile(r"^(?P<patient>[A-Za-z]+_\d+)_(?P<tb>[01])$")
# Kaggle copies of the Shenzhen masks append "_mask" to the image stem.
_MASK_SUFFIX = "_mask"


@register
class ShenzhenMontgomerySegmentation(SourceAdapter):
    """Shenzhen and Montgomery TB chest X-rays with lung masks, in a U-Net training layout.

    Citation: Jaeger S., Candemir S., Antani S., Wang Y.-X. J., Lu P.-X., Thoma G., "Two public
    chest X-ray datasets for computer-aided screening of pulmonary diseases", Quantitative
    Imaging in Medicine and Surgery 4(6), 475-477 (2014); Shenzhen masks: Stirenko S. et al.,
    "Chest X-ray analysis of tuberculosis by deep learning with segmentation and augmentation",
    ELNANO 2018; layout: github.com/asiskumarroy/Semantic-segmentation.
    Licence: none stated upstream; NLM asks not to redistribute the images outside the research
    group; the Shenzhen masks are CC BY-NC-SA 4.0.
    Labels: ``_1`` (tuberculosis) -> other, ``_0`` -> normal; ``not_covid_source``.
    Masks: one both-lungs mask per image, ``scale_to_image`` true.

    Config keys: ``collections`` (list of ``{images_dir, masks_dir}``), ``license``, ``view``.
    """

    source_ids: ClassVar[tuple[str, ...]] = ("shenzhen_montgomery_seg",)
    citation: ClassVar[str] = (
        "Jaeger S, Candemir S, Antani S, Wang YX, Lu PX, Thoma G. Two public chest X-ray datasets "
        "for computer-aided screening of pulmonary diseases. Quant Imaging Med Surg. "
        "2014;4(6):475-477"
    )
    license: ClassVar[str] = (
        "no licence stated; NLM: research use, no redistribution; Shenzhen masks CC BY-NC-SA 4.0"
    )

    def _collections(self) -> list[tuple[str, str]]:
        collections = setting(self.config, self.source_id, "collections")
        try:
            return [(folder(c["images_dir"]), folder(c["masks_dir"])) for c in collections]
        except (KeyError, TypeError):
            raise ValueError(
                f"ingest.sources.{self.source_id}.collections must be a list of "
                "{images_dir, masks_dir} mappings"
            ) from None

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """Every image of every configured collection, labelled from its NLM file name."""
        license_ = self.configured_license
        view = str(self.config.get("view") or "")
        rows, unnamed = [], []
        for images_dir, _ in self._collections():
            for relpath in image_files(client.list_files(images_dir), self.source_id):
                if not relpath.startswith(images_dir):
                    continue
                match = _NLM_STEM.match(PurePosixPath(relpath).stem)
                if match is None:
                    unnamed.append(relpath)
                tuberculosis = match is not None and match["tb"] == "1"
                rows.append(
                    candidate_row(
                        self.source_id,
                        relpath,
                        client,
                        covid_source=NOT_COVID_SOURCE,
                        label="normal" if match and not tuberculosis else "other",
                        patient_id=match["patient"] if match else "",
                        view=view,
                        finding=("tuberculosis" if tuberculosis else "normal") if match else "",
                        license=license_,
                    )
                )
        if unnamed:
            logger.warning(
                "%s: %d files without an NLM name (<SET>_<nnnn>_<0|1>), labelled other, e.g. %s",
                self.source_id,
                len(unnamed),
                unnamed[:3],
            )
        frame = candidate_frame(rows)
        logger.info("%s: %d images", self.source_id, len(frame))
        return frame

    def list_masks(self, client: SourceClient, images: pd.DataFrame) -> pd.DataFrame:
        """The both-lungs mask of each image, paired by file stem; resized to the image later.

        Args:
            client: lists the mask folders and gives the URLs.
            images: candidate image rows whose masks are wanted.

        Returns:
            One row per mask with ``MASK_CANDIDATE_COLUMNS``.
        """
        # Pair by (folder, stem): a mask may be a .png for a .jpg image.
        by_stem = {
            (str(PurePosixPath(path).parent), PurePosixPath(path).stem): image_id
            for path, image_id in zip(images["upstream_path"], images["image_id"], strict=True)
        }
        rows, orphans = [], []
        for images_dir, masks_dir in self._collections():
            for mask_path in image_files(client.list_files(masks_dir), self.source_id):
                if not mask_path.startswith(masks_dir):
                    continue
                mask = PurePosixPath(mask_path)
                stem = mask.stem.removesuffix(_MASK_SUFFIX)
                image_id = by_stem.get((images_dir.rstrip("/"), stem))
                if image_id is None:
                    orphans.append(mask_path)
                    continue
                rows.append(
                    {
                        "image_id": image_id,
                        "source_id": self.source_id,
                        "structure": "both_lungs",
                        "url": client.url(mask_path),
                        "offset_top": 0,
                        "offset_left": 0,
                        # Needed for Shenzhen, a no-op where sizes already agree (Montgomery).
                        "scale_to_image": True,
                        "local_path": "",
                    }
                )
        if orphans:
            logger.info(
                "%s: %d masks without a wanted image, e.g. %s",
                self.source_id,
                len(orphans),
                orphans[:3],
            )
        frame = mask_frame(rows)
        logger.info("%s: %d lung masks", self.source_id, len(frame))
        return frame
