"""Adapter for agchung's COVID-Net collections: Figure1 and Actualmed COVID-19 chest X-rays.

Both keep ``images/`` and a ``metadata.csv`` in a reduced ieee8023-like schema (``patientid,
offset, sex, age, finding, ..., view, modality, ...``). Actualmed names each image in an
``imagename`` column; Figure1 has no file column: the ``patientid`` cell ("COVID-00003a") is the
file stem. Figure1's CSV carries Windows-1252 bytes.
"""

from __future__ import annotations

import logging
import re
from pathlib import PurePosixPath
from typing import ClassVar

import pandas as pd

from covid_cxnet_pipeline.schema import COVID_SOURCES
from covid_cxnet_pipeline.sources.base import SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    candidate_frame,
    candidate_row,
    folder,
    image_files,
    read_metadata_csv,
    setting,
)
from covid_cxnet_pipeline.sources.labels import clean_id, finding_label, normalise_sex, parse_age
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

# Figure1 numbers the images of one patient "COVID-00003a", "COVID-00003b".
_IMAGE_LETTER = re.compile(r"^(?P<patient>.*\d)[a-z]$")


@register
class AgchungCovidCollections(SourceAdapter):
    """Figure1 and Actualmed COVID-19 chest X-ray datasets (COVID-Net initiative, DarwinAI/UW).

    Citation: Chung A. et al., "Figure 1 COVID-19 Chest X-ray Dataset Initiative" and
    "Actualmed COVID-19 Chest X-ray Dataset Initiative", github.com/agchung, 2020; see Wang L.,
    Lin Z. Q., Wong A., "COVID-Net", Scientific Reports 10, 19549 (2020).
    Licence: none stated; the READMEs restrict use to research purposes.
    Labels: ``finding`` "COVID-19" -> covid, "No finding" -> normal, "Pneumonia" -> cap,
    blank (Actualmed: "Inconclusive"; Figure1: uncurated) -> other.
    ``covid_source`` comes from the block's ``covid_source`` key: Figure1 is one of the paper's
    nine sources (``figure1``); Actualmed is a hospital collection the paper does not name
    (``unknown``).

    Config keys: ``metadata_path``, ``images_dir``, ``license``, ``covid_source`` and either
    ``filename_column`` (Actualmed: ``imagename``) or ``stem_column`` (Figure1: ``patientid``).
    """

    source_ids: ClassVar[tuple[str, ...]] = ("figure1_covid", "actualmed_covid")
    citation: ClassVar[str] = (
        "Chung A, et al. Figure 1 / Actualmed COVID-19 Chest X-ray Dataset Initiative, "
        "github.com/agchung, 2020; Wang L, Lin ZQ, Wong A. COVID-Net. Sci Rep 10, 19549 (2020)"
    )
    license: ClassVar[str] = "research use only (no licence stated upstream)"

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """The listed images joined with their metadata rows by file name or file stem."""
        images_dir = folder(setting(self.config, self.source_id, "images_dir"))
        metadata_path = setting(self.config, self.source_id, "metadata_path")
        covid_source = setting(self.config, self.source_id, "covid_source")
        if covid_source not in COVID_SOURCES:
            raise ValueError(
                f"ingest.sources.{self.source_id}.covid_source={covid_source!r} is not one of "
                f"{COVID_SOURCES}"
            )
        filename_column = self.config.get("filename_column")
        stem_column = self.config.get("stem_column")
        if bool(filename_column) == bool(stem_column):
            raise ValueError(
                f"ingest.sources.{self.source_id}: set exactly one of filename_column "
                "(metadata names the file) or stem_column (metadata names the file stem)"
            )
        license_ = self.configured_license
        metadata = read_metadata_csv(client.fetch_metadata(metadata_path))
        key_column = filename_column or stem_column
        if key_column not in metadata.columns or "finding" not in metadata.columns:
            raise ValueError(
                f"{self.source_id}: {metadata_path} lacks {key_column!r} or 'finding' "
                f"(columns: {list(metadata.columns)})"
            )
        records = {}
        for record in metadata.to_dict(orient="records"):
            key = record[key_column].strip()
            if key in records:
                logger.warning("%s: %r listed twice; first row kept", self.source_id, key)
                continue
            records[key] = record
        files = [
            path
            for path in image_files(client.list_files(images_dir), self.source_id)
            if path.startswith(images_dir)
        ]
        rows, used = [], set()
        for relpath in files:
            name = PurePosixPath(relpath)
            key = name.name if filename_column else name.stem
            record = records.get(key, {})
            if record:
                used.add(key)
            finding = record.get("finding", "").strip()
            patient_id = clean_id(record.get("patientid", ""))
            if stem_column:
                letter = _IMAGE_LETTER.match(patient_id)
                patient_id = letter["patient"] if letter else patient_id
            rows.append(
                candidate_row(
                    self.source_id,
                    relpath,
                    client,
                    covid_source=covid_source,
                    label=finding_label(finding),
                    patient_id=patient_id,
                    age=parse_age(record.get("age", "")),
                    sex=normalise_sex(record.get("sex", "")),
                    view=record.get("view", "").strip(),
                    finding=finding,
                    license=license_,
                )
            )
        missing = sorted(set(records) - used)
        if missing:
            logger.warning(
                "%s: %d metadata rows have no image file, e.g. %s",
                self.source_id,
                len(missing),
                missing[:5],
            )
        frame = candidate_frame(rows)
        logger.info(
            "%s: %d images, labels %s",
            self.source_id,
            len(frame),
            frame["label"].value_counts().to_dict(),
        )
        return frame
