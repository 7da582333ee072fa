"""Adapter for armiro/COVID-CXNet: the COVID-19 chest X-rays the COVID-CXNet paper collected.

Layout: ``chest_xray_images/covid19/<number>[p][-].<ext>`` with mixed extensions, and a
``metadata.csv`` (UTF-8 BOM) covering only part of the images, whose file names sometimes differ
from the real ones in case or extension (``374.png`` row for ``374.PNG``, ``403.jpg`` for
``403.jpeg``).
"""

from __future__ import annotations

import logging
import re
from pathlib import PurePosixPath
from typing import ClassVar

import pandas as pd

from covid_cxnet_pipeline.sources.attribution import UNKNOWN, attribute_url
from covid_cxnet_pipeline.sources.base import SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    candidate_frame,
    candidate_row,
    folder,
    image_files,
    read_metadata_csv,
    setting,
)
from covid_cxnet_pipeline.sources.labels import clean_id, normalise_sex, parse_age
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

# "481p-": a number, then "p" (pediatric patient) and/or "-" (CXR without visible abnormality in
# a CT/PCR-proven COVID-19 patient), as the upstream README defines them.
_FLAGGED_STEM = re.compile(r"^\d+(?P<suffix>[p-]{1,2})$")
PEDIATRIC = "pediatric"
NORMAL_LOOKING = "normal_looking"


def name_flags(filename: str) -> list[str]:
    """The armiro flags a file name carries, in a fixed order.

    Args:
        filename: e.g. "481p-.jpg".

    Returns:
        A subset of ``["pediatric", "normal_looking"]``.
    """
    match = _FLAGGED_STEM.match(PurePosixPath(filename).stem)
    suffix = match["suffix"] if match else ""
    flags = []
    if "p" in suffix:
        flags.append(PEDIATRIC)
    if "-" in suffix:
        flags.append(NORMAL_LOOKING)
    return flags


def match_metadata(filenames: list[str], metadata_names: list[str]) -> dict[str, str]:
    """Pair image file names with metadata ``filename`` cells, tolerating upstream typos.

    Exact names first, then the same name in another case, then the same stem in any case
    (``403.jpg`` row -> ``403.jpeg`` file) when that stem names exactly one row and one file.

    Args:
        filenames: base names of the listed image files.
        metadata_names: the metadata's ``filename`` cells.

    Returns:
        File name -> metadata name, for every file that has a row.
    """
    unclaimed = set(metadata_names)
    pairs = {name: name for name in filenames if name in unclaimed}
    unclaimed -= set(pairs.values())
    for match_key in (str.lower, lambda name: PurePosixPath(name).stem.lower()):
        rows_by_key: dict[str, list[str]] = {}
        for name in unclaimed:
            rows_by_key.setdefault(match_key(name), []).append(name)
        files_by_key: dict[str, list[str]] = {}
        for name in filenames:
            if name not in pairs:
                files_by_key.setdefault(match_key(name), []).append(name)
        for key, files in files_by_key.items():
            rows = rows_by_key.get(key, [])
            if len(files) == 1 and len(rows) == 1:
                pairs[files[0]] = rows[0]
                unclaimed.discard(rows[0])
    return pairs


@register
class ArmiroCovidCxnet(SourceAdapter):
    """armiro/COVID-CXNet COVID-19 chest X-rays (900 images upstream, all COVID-19).

    Citation: Haghanifar A., Majdabadi M. M., Choi Y., Deivalakshmi S., Ko S. "COVID-CXNet:
    Detecting COVID-19 in frontal chest X-ray images using deep learning", Multimedia Tools and
    Applications 81, 30615-30645 (2022), doi:10.1007/s11042-022-12156-z; images
    doi:10.6084/m9.figshare.12580328.
    Licence: images CC BY 4.0 (README; the repository's MIT LICENSE covers code); each image was
    collected from a third-party site with its own terms.
    Labels: covid for every image; flags "pediatric" (``p`` in the name, also sets
    ``is_pediatric_flag``) and "normal_looking" (``-``). ``covid_source`` comes from the
    metadata ``url`` through ``attribution.RULES``; images without a metadata row are "unknown".

    Config keys: ``metadata_path``, ``images_dir``, ``license``.
    """

    source_ids: ClassVar[tuple[str, ...]] = ("armiro_covidcxnet",)
    citation: ClassVar[str] = (
        "Haghanifar A, Majdabadi MM, Choi Y, Deivalakshmi S, Ko S. COVID-CXNet: Detecting "
        "COVID-19 in frontal chest X-ray images using deep learning. Multimed Tools Appl. 2022. "
        "doi:10.1007/s11042-022-12156-z; data doi:10.6084/m9.figshare.12580328"
    )
    license: ClassVar[str] = "CC BY 4.0"

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """Every image file in the COVID-19 folder, with its metadata row where one matches."""
        images_dir = folder(setting(self.config, self.source_id, "images_dir"))
        metadata_path = setting(self.config, self.source_id, "metadata_path")
        license_ = self.configured_license
        metadata = read_metadata_csv(client.fetch_metadata(metadata_path))
        if "filename" not in metadata.columns:
            raise ValueError(
                f"{self.source_id}: {metadata_path} has no 'filename' column "
                f"(columns: {list(metadata.columns)[:8]}...)"
            )
        records = {
            record["filename"].strip(): record for record in metadata.to_dict(orient="records")
        }
        files = [path for path in image_files(client.list_files(images_dir), self.source_id)]
        files = [path for path in files if path.startswith(images_dir)]
        names = {PurePosixPath(path).name: path for path in files}
        pairs = match_metadata(list(names), list(records))
        for name, row_name in pairs.items():
            if name != row_name:
                logger.info(
                    "%s: metadata row %r matched to file %r", self.source_id, row_name, name
                )
        unmatched_rows = sorted(set(records) - set(pairs.values()))
        if unmatched_rows:
            logger.warning(
                "%s: %d metadata rows have no image file, e.g. %s",
                self.source_id,
                len(unmatched_rows),
                unmatched_rows[:5],
            )
        rows = []
        for name, relpath in names.items():
            record = records.get(pairs.get(name, ""), {})
            flags = name_flags(name)
            rows.append(
                candidate_row(
                    self.source_id,
                    relpath,
                    client,
                    covid_source=(
                        attribute_url(
                            record.get("url", ""),
                            where=f"{self.source_id}: metadata row {pairs[name]!r}",
                        )
                        if record
                        else UNKNOWN
                    ),
                    label="covid",
                    patient_id=clean_id(record.get("patient_id", "")),
                    age=parse_age(record.get("age", "")),
                    sex=normalise_sex(record.get("sex", "")),
                    view=record.get("view", "").strip(),
                    finding=record.get("label", "").strip(),
                    license=license_,
                    is_pediatric_flag=PEDIATRIC in flags,
                    flags=flags,
                )
            )
        frame = candidate_frame(rows)
        logger.info(
            "%s: %d images, %d with metadata; covid_source %s",
            self.source_id,
            len(frame),
            len(pairs),
            frame["covid_source"].value_counts().to_dict(),
        )
        return frame
