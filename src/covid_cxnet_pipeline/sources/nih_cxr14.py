"""Adapter for NIH ChestX-ray14: the official label file joined with the image tar.gz archives.

NIH publishes ``Data_Entry_2017_v2020.csv`` (earlier ``Data_Entry_2017.csv``) with one row per
image (``Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age, Patient Gender, View
Position, ...``) and twelve archives ``images_001.tar.gz`` ... ``images_012.tar.gz`` that each
unpack to ``images/<Image Index>``. Any subset of the archives can be configured.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import pandas as pd

from covid_cxnet_pipeline.sources.attribution import NOT_COVID_SOURCE
from covid_cxnet_pipeline.sources.base import SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    archive_images,
    candidate_frame,
    candidate_row,
    setting,
)
from covid_cxnet_pipeline.sources.labels import clean_id, nih_label, normalise_sex, parse_age
from covid_cxnet_pipeline.sources.nih_metadata_txv import read_nih_labels
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)


def read_data_entry(path: Path, source_id: str) -> dict[str, dict[str, str]]:
    """The NIH label file as ``Image Index -> row`` (plain or gzip-compressed CSV).

    Args:
        path: the cached ``Data_Entry_2017*.csv[.gz]``.
        source_id: for error messages.

    Returns:
        One dict of cell strings per image name.

    Raises:
        ValueError: a required column is missing.
    """
    table = read_nih_labels(path, source_id)
    return dict(zip(table.index, table.to_dict(orient="records"), strict=True))


@register
class NihChestXray14Adapter(SourceAdapter):
    """NIH ChestX-ray14 (112,120 frontal chest X-rays of 30,805 patients, 14 text-mined labels).

    Source: NIH Clinical Center, https://nihcc.app.box.com/v/ChestXray-NIHCC (label file
    ``Data_Entry_2017_v2020.csv``; image archives from NIH's ``batch_download_zips.py``).
    Citation: Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8: Hospital-scale
    chest X-ray database and benchmarks on weakly-supervised classification and localization of
    common thorax diseases. CVPR 2017:2097-2106.
    Licence: public release by the NIH Clinical Center with no restrictions on use; users are
    asked to acknowledge the NIH Clinical Center and cite the paper.
    Labels: "No Finding" -> normal; any label list containing "Pneumonia" -> cap (co-labels such
    as Infiltration are common); everything else -> other. ``finding`` keeps ``Finding Labels``.

    Config keys (``ingest.sources.nih_cxr14``): ``metadata_path`` (path of the label file under
    ``base_url``), ``archives`` (list of archive URLs or paths under ``base_url``; one that
    cannot be fetched is reported and skipped, the source fails only when all do).
    """

    source_ids: ClassVar[tuple[str, ...]] = ("nih_cxr14",)
    citation: ClassVar[str] = (
        "Wang X et al. ChestX-ray8: Hospital-scale chest X-ray database and benchmarks on "
        "weakly-supervised classification and localization of common thorax diseases. "
        "CVPR 2017:2097-2106."
    )
    license: ClassVar[str] = "NIH Clinical Center public release (acknowledge NIH CC, cite paper)"

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """One row per archived image that the label file describes."""
        entries = read_data_entry(
            client.fetch_metadata(setting(self.config, self.source_id, "metadata_path")),
            self.source_id,
        )
        archives = setting(self.config, self.source_id, "archives")
        if not archives:
            raise ValueError(
                f"ingest.sources.{self.source_id}.archives is empty: list at least one of "
                "images_001.tar.gz ... images_012.tar.gz"
            )
        license_ = self.configured_license
        rows: dict[str, dict[str, Any]] = {}
        unlabelled: list[str] = []
        # An archive that cannot be fetched is reported and skipped (``failures``).
        for url, root in self.fetch_archives(client, archives, "archives"):
            found = 0
            for member in archive_images(root):
                entry = entries.get(PurePosixPath(member).name)
                if entry is None:
                    unlabelled.append(member)
                    continue
                if member in rows:
                    logger.warning("%s: %s is in two archives; first kept", self.source_id, member)
                    continue
                rows[member] = self._row(
                    client, entry, member, root, archive_url=url, license_=license_
                )
                found += 1
            logger.info("%s: %d labelled images in %s", self.source_id, found, url)
        if unlabelled:
            logger.warning(
                "%s: %d archived images have no row in the label file (skipped), e.g. %s",
                self.source_id,
                len(unlabelled),
                unlabelled[:3],
            )
        return candidate_frame(list(rows.values()))

    def _row(
        self,
        client: SourceClient,
        entry: dict[str, str],
        member: str,
        root: Path,
        *,
        archive_url: str,
        license_: str,
    ) -> dict[str, Any]:
        findings = entry["Finding Labels"].strip()
        return candidate_row(
            self.source_id,
            member,
            client,
            covid_source=NOT_COVID_SOURCE,
            label=nih_label(findings),
            patient_id=clean_id(entry["Patient ID"]),
            age=parse_age(entry["Patient Age"]),
            sex=normalise_sex(entry["Patient Gender"]),
            view=entry["View Position"].strip(),
            finding=findings,
            license=license_,
            local_path=str(root / member),
            archive_url=archive_url,
        )
