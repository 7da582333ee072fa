"""Adapter for the DarkCovidNet image layout (muhammedtalo/COVID-19), joined with NIH labels.

``X-Ray Image DataSet/{No_findings,Pneumonia,Covid-19}/``: the first two folders hold NIH
ChestX-ray14 PNGs under their NIH names, the third copies of ieee8023 COVID-19 images. The
repository has no metadata, so age, sex, view, patient and finding of the NIH images come from
the NIH label file found at the block's ``nih_labels_url`` (an absolute URL: by default the
file the ``nih_metadata_txv`` source serves).
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import ClassVar

import pandas as pd

from covid_cxnet_pipeline.schema import RAW_LABELS
from covid_cxnet_pipeline.sources.attribution import NOT_COVID_SOURCE
from covid_cxnet_pipeline.sources.base import SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    candidate_frame,
    candidate_row,
    folder,
    image_files,
    setting,
)
from covid_cxnet_pipeline.sources.labels import clean_id, nih_label, normalise_sex, parse_age
from covid_cxnet_pipeline.sources.nih_metadata_txv import read_nih_labels
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)


@register
class DarkCovidNetNih(SourceAdapter):
    """DarkCovidNet X-ray image set: NIH ChestX-ray14 normals and pneumonias + ieee8023 COVID-19.

    Citation: Ozturk T., Talo M., Yildirim E. A., Baloglu U. B., Yildirim O., Acharya U. R.,
    "Automated detection of COVID-19 cases using deep neural networks with X-ray images",
    Computers in Biology and Medicine 121, 103792 (2020); NIH images from Wang X. et al.,
    "ChestX-ray8", CVPR 2017; COVID-19 images from Cohen J. P. et al., arXiv:2003.11597.
    Licence: none stated; NIH images are an unrestricted NIH Clinical Center release
    (acknowledge the NIH CC); the COVID-19 images keep their ieee8023 licences.
    Labels: NIH images from ``Finding Labels`` ("No Finding" -> normal, "...Pneumonia..." ->
    cap), else from the folder (``folder_labels``); ``Covid-19`` -> covid with
    ``covid_source`` ``cohen_ieee8023``; NIH images are ``not_covid_source``.

    Config keys: ``images_dir``, ``folder_labels`` (folder -> label), ``covid_folders``
    (folders holding ieee8023 copies), ``nih_labels_url``, ``license``.
    """

    source_ids: ClassVar[tuple[str, ...]] = ("darkcovidnet_nih",)
    citation: ClassVar[str] = (
        "Ozturk T, Talo M, Yildirim EA, Baloglu UB, Yildirim O, Acharya UR. Automated detection "
        "of COVID-19 cases using deep neural networks with X-ray images. Comput Biol Med 2020; "
        "121:103792"
    )
    license: ClassVar[str] = (
        "no licence stated; NIH Clinical Center release (acknowledge NIH CC) + ieee8023 copies"
    )

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """Every image in the labelled folders, NIH ones joined with the NIH label file."""
        images_dir = folder(setting(self.config, self.source_id, "images_dir"))
        folder_labels = dict(setting(self.config, self.source_id, "folder_labels"))
        covid_folders = set(self.config.get("covid_folders") or ())
        bad = {name: label for name, label in folder_labels.items() if label not in RAW_LABELS}
        if bad:
            raise ValueError(
                f"ingest.sources.{self.source_id}.folder_labels: {bad} are not in {RAW_LABELS}"
            )
        labels_url = setting(self.config, self.source_id, "nih_labels_url")
        nih = read_nih_labels(client.fetch_metadata(labels_url), self.source_id)
        license_ = self.configured_license
        rows, unlabelled, disagreements, outside = [], [], 0, []
        for relpath in image_files(client.list_files(images_dir), self.source_id):
            parts = PurePosixPath(relpath.removeprefix(images_dir)).parts
            if not relpath.startswith(images_dir) or len(parts) != 2:
                outside.append(relpath)
                continue
            folder_name, name = parts
            if folder_name not in folder_labels:
                outside.append(relpath)
                continue
            folder_label = folder_labels[folder_name]
            if folder_name in covid_folders:
                rows.append(
                    candidate_row(
                        self.source_id,
                        relpath,
                        client,
                        covid_source="cohen_ieee8023",
                        label=folder_label,
                        finding=folder_name,
                        license=license_,
                    )
                )
                continue
            record = nih.loc[name].to_dict() if name in nih.index else None
            if record is None:
                unlabelled.append(relpath)
                record = {}
            finding = record.get("Finding Labels", "").strip()
            label = nih_label(finding) if finding else folder_label
            disagreements += label != folder_label
            rows.append(
                candidate_row(
                    self.source_id,
                    relpath,
                    client,
                    covid_source=NOT_COVID_SOURCE,
                    label=label,
                    patient_id=clean_id(record.get("Patient ID", "")),
                    age=parse_age(record.get("Patient Age", "")),
                    sex=normalise_sex(record.get("Patient Gender", "")),
                    view=record.get("View Position", "").strip(),
                    finding=finding,
                    license=license_,
                )
            )
        if outside:
            logger.warning(
                "%s: %d files outside the configured folders skipped, e.g. %s",
                self.source_id,
                len(outside),
                outside[:3],
            )
        if unlabelled:
            logger.warning(
                "%s: %d NIH images have no row in %s; labelled by folder, e.g. %s",
                self.source_id,
                len(unlabelled),
                labels_url,
                unlabelled[:3],
            )
        if disagreements:
            logger.warning(
                "%s: %d images whose NIH label differs from their folder; NIH label kept",
                self.source_id,
                disagreements,
            )
        frame = candidate_frame(rows)
        logger.info(
            "%s: %d images, labels %s",
            self.source_id,
            len(frame),
            frame["label"].value_counts().to_dict(),
        )
        return frame
