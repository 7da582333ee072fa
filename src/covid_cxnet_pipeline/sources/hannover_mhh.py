"""Adapter for the Hannover Medical School COVID-19 image repository (ml-workgroup on GitHub).

``data.csv`` holds one row per radiograph (``patient_id, image_id, sex, age, ..., modality,
projection, <laboratory values>``) and the image is ``png/<image_id>.png``. Every patient is
COVID-19 positive; ages are redacted upstream (blank) until k-anonymity allows publishing them.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import pandas as pd

from covid_cxnet_pipeline.sources.base import SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    candidate_frame,
    candidate_row,
    folder,
    is_image_path,
    read_metadata_csv,
    require_columns,
    safe_relpath,
)
from covid_cxnet_pipeline.sources.labels import clean_id, normalise_sex, parse_age
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("patient_id", "image_id", "sex", "projection")


def hannover_sex(value: str) -> str:
    """ "M", "F" or "" from ``data.csv``'s sex cell (the README spells female "w", weiblich)."""
    return "F" if value.strip().lower() == "w" else normalise_sex(value)


@register
class HannoverMhhAdapter(SourceAdapter):
    """COVID-19 Image Repository of Hannover Medical School (MHH), Institute for Diagnostic and
    Interventional Radiology: chest radiographs of COVID-19 positive patients.

    Source: https://github.com/ml-workgroup/covid-19-image-repository (``data.csv``, ``png/``).
    Citation: Winther HB, Laser H, Gerbel S, et al. COVID-19 Image Repository.
    doi:10.6084/m9.figshare.12275009 (2020).
    Licence: CC BY 3.0 (master, image and laboratory data).
    Labels: every image -> covid (finding "COVID-19"); ``view`` keeps ``projection`` as given
    ("ap", "pa"); rows whose ``modality`` is not listed in ``modalities`` are skipped.

    Config keys (``ingest.sources.hannover_mhh``): ``metadata_path`` (default ``data.csv``),
    ``images_dir`` (default ``png/``), ``image_extension`` (default ``.png``), ``modalities``
    (default ``["CR", "DX"]``; null keeps every row).
    """

    source_ids: ClassVar[tuple[str, ...]] = ("hannover_mhh",)
    citation: ClassVar[str] = (
        "Winther HB et al. COVID-19 Image Repository (Hannover Medical School). "
        "doi:10.6084/m9.figshare.12275009"
    )
    license: ClassVar[str] = "CC BY 3.0"

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """One row per ``data.csv`` record whose image name is safe."""
        path = client.fetch_metadata(str(self.config.get("metadata_path", "data.csv")))
        metadata = read_metadata_csv(path)
        require_columns(
            metadata,
            REQUIRED_COLUMNS,
            where=f"{self.source_id}: {path}",
            hint=f"is ingest.sources.{self.source_id}.metadata_path the repository's data.csv?",
        )
        images_dir = folder(str(self.config.get("images_dir", "png/")))
        extension = str(self.config.get("image_extension", ".png"))
        modalities = self.config.get("modalities", ["CR", "DX"])
        wanted = {m.upper() for m in modalities} if modalities is not None else None
        license_ = self.configured_license
        rows: dict[str, dict[str, Any]] = {}
        skipped_modality = 0
        for record in metadata.to_dict(orient="records"):
            relpath = safe_relpath(images_dir + record["image_id"].strip() + extension)
            if relpath is None or not is_image_path(relpath):
                logger.warning("%s: refusing image id %r", self.source_id, record["image_id"])
                continue
            modality = record.get("modality", "").strip().upper()
            if wanted is not None and modality not in wanted:
                skipped_modality += 1
                continue
            if relpath in rows:
                logger.warning("%s: %s listed twice; first row kept", self.source_id, relpath)
                continue
            rows[relpath] = candidate_row(
                self.source_id,
                relpath,
                client,
                covid_source="hannover",
                label="covid",
                patient_id=clean_id(record["patient_id"]),
                age=parse_age(record.get("age", "")),
                sex=hannover_sex(record["sex"]),
                view=record["projection"].strip(),
                finding="COVID-19",
                license=license_,
            )
        if skipped_modality:
            logger.info("%s: %d rows of other modalities skipped", self.source_id, skipped_modality)
        logger.info("%s: %d images listed from %s", self.source_id, len(rows), path.name)
        return candidate_frame(list(rows.values()))
