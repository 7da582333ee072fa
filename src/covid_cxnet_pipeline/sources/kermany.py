"""Adapter for Kermany et al.'s pediatric chest X-rays (Mendeley Data ``ChestXRay2017.zip``).

The archive holds ``chest_xray/{train,test[,val]}/{NORMAL,PNEUMONIA}/<file>.jpeg``; there is no
metadata file: the class is the folder, the pneumonia type and the patient are in the file name
(``person1_bacteria_1.jpeg``, ``person1_virus_6.jpeg``; normals ``IM-0115-0001.jpeg``,
``NORMAL2-IM-1427-0001.jpeg``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import ClassVar

import pandas as pd

from covid_cxnet_pipeline.schema import RAW_LABELS
from covid_cxnet_pipeline.sources.attribution import NOT_COVID_SOURCE
from covid_cxnet_pipeline.sources.base import SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    archive_images,
    candidate_frame,
    candidate_row,
    setting,
)
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

SPLITS = ("train", "test", "val")
_PNEUMONIA = re.compile(r"^(?P<patient>person\d+)_(?P<kind>bacteria|virus)_\d+$", re.IGNORECASE)
# IM-<patient>-<image>; the second normal batch prefixes "NORMAL2-".
_NORMAL = re.compile(r"^(?P<patient>(?:NORMAL2-)?IM-\d+)-\d+$", re.IGNORECASE)


def parse_member(member: str) -> dict[str, str] | None:
    """Class, pneumonia type, patient and split of one archive member, None if not an image row.

    Args:
        member: a path such as ``"chest_xray/train/PNEUMONIA/person1_virus_6.jpeg"``.

    Returns:
        ``{"split", "cls" ("NORMAL"|"PNEUMONIA"), "kind" ("bacteria"|"virus"|""), "patient"}``
        or None when the path is not ``.../<split>/<class>/<file>``.
    """
    parts = PurePosixPath(member).parts
    if len(parts) < 3 or parts[-3].lower() not in SPLITS:
        return None
    cls, stem = parts[-2].upper(), PurePosixPath(member).stem
    if cls not in ("NORMAL", "PNEUMONIA"):
        return None
    parsed = (_PNEUMONIA if cls == "PNEUMONIA" else _NORMAL).match(stem)
    return {
        "split": parts[-3].lower(),
        "cls": cls,
        "kind": parsed["kind"].lower() if parsed and cls == "PNEUMONIA" else "",
        "patient": parsed["patient"] if parsed else "",
    }


@register
class KermanyAdapter(SourceAdapter):
    """Kermany, Zhang & Goldbaum: labeled pediatric chest X-rays (Guangzhou Women and Children's
    Medical Center, patients aged one to five years, anterior-posterior views).

    Source: Mendeley Data, "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for
    Classification", v2, doi:10.17632/rscbjbr9sj.2, file ``ChestXRay2017.zip``.
    Citation: Kermany DS et al. Identifying medical diagnoses and treatable diseases by
    image-based deep learning. Cell 2018;172(5):1122-1131.
    Licence: CC BY 4.0.
    Labels: NORMAL -> normal; PNEUMONIA with "bacteria" in the name -> cap; PNEUMONIA with
    "virus" -> ``viral_label`` (default other: COVID-19 is itself a viral pneumonia, so pooling
    pediatric viral pneumonias into ``cap`` would blur the cap/covid boundary the classifiers
    learn; the ``viral`` flag and this key let curation opt in). Every image is flagged
    pediatric (``is_pediatric_flag``); per-image ages are not published, so ``age`` is NaN.

    Config keys (``ingest.sources.kermany``): ``archive`` (URL, or path under ``base_url``, or a
    list of them: one that cannot be fetched is reported and skipped),
    ``view`` (default ""), ``viral_label`` (default "other").
    """

    source_ids: ClassVar[tuple[str, ...]] = ("kermany",)
    citation: ClassVar[str] = (
        "Kermany DS et al. Identifying medical diagnoses and treatable diseases by image-based "
        "deep learning. Cell 2018;172(5):1122-1131. doi:10.17632/rscbjbr9sj.2"
    )
    license: ClassVar[str] = "CC BY 4.0"

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """One row per image under ``chest_xray/<split>/<class>/``."""
        archive = setting(self.config, self.source_id, "archive")
        viral_label = str(self.config.get("viral_label", "other"))
        if viral_label not in RAW_LABELS:
            raise ValueError(
                f"ingest.sources.{self.source_id}.viral_label must be one of {RAW_LABELS}, "
                f"got {viral_label!r}"
            )
        license_ = self.configured_license
        rows, skipped, seen = [], [], set()
        for url, root, member in self._members(client, archive):
            if member in seen:
                logger.warning("%s: %s is in two archives; first kept", self.source_id, member)
                continue
            seen.add(member)
            parsed = parse_member(member)
            if parsed is None:
                skipped.append(member)
                continue
            if parsed["cls"] == "NORMAL":
                label, finding, flags = "normal", "NORMAL", ["pediatric"]
            elif parsed["kind"] == "bacteria":
                label, finding, flags = "cap", "PNEUMONIA/bacteria", ["pediatric", "bacterial"]
            elif parsed["kind"] == "virus":
                label, finding, flags = viral_label, "PNEUMONIA/virus", ["pediatric", "viral"]
            else:
                logger.warning("%s: pneumonia type not in the name of %s", self.source_id, member)
                label, finding, flags = "other", "PNEUMONIA", ["pediatric"]
            row = candidate_row(
                self.source_id,
                member,
                client,
                covid_source=NOT_COVID_SOURCE,
                label=label,
                patient_id=parsed["patient"],
                view=str(self.config.get("view") or ""),
                finding=finding,
                license=license_,
                is_pediatric_flag=True,
                flags=[*flags, f"upstream_{parsed['split']}"],
                local_path=str(root / member),
                archive_url=url,
            )
            rows.append(row)
        if skipped:
            logger.warning(
                "%s: %d images outside chest_xray/<split>/<NORMAL|PNEUMONIA>/ skipped, e.g. %s",
                self.source_id,
                len(skipped),
                skipped[:3],
            )
        if not rows:
            raise ValueError(
                f"{self.source_id}: no chest_xray/<split>/<NORMAL|PNEUMONIA>/ images in {archive}; "
                f"check ingest.sources.{self.source_id}.archive (ChestXRay2017.zip)"
            )
        logger.info("%s: %d images listed from %s", self.source_id, len(rows), archive)
        return candidate_frame(rows)

    def _members(
        self, client: SourceClient, archive: str | list[str]
    ) -> list[tuple[str, Path, str]]:
        """``(archive URL, extracted folder, member)`` of every image in the usable archives."""
        return [
            (url, root, member)
            for url, root in self.fetch_archives(client, archive, "archive")
            for member in archive_images(root)
        ]
