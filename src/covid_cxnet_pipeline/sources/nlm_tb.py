"""Adapters for the NLM tuberculosis sets: Montgomery County (with lung masks) and Shenzhen.

Both ship as one zip archive with ``CXR_png/`` images named ``<SET>_<nnnn>_<0|1>.png`` (``_0``
normal, ``_1`` tuberculosis) and one ``ClinicalReadings/<stem>.txt`` per image holding sex, age
and the radiologist's reading. Montgomery adds ``ManualMask/{leftMask,rightMask}/<stem>.png``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import pandas as pd

from covid_cxnet_pipeline.sources.attribution import NOT_COVID_SOURCE
from covid_cxnet_pipeline.sources.base import SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    archive_images,
    candidate_frame,
    candidate_row,
    mask_frame,
    member_url,
)
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

# "MCUCXR_0001_0" / "CHNCXR_0327_1": the last digit is the NLM's TB label.
_STEM = re.compile(r"^(?P<patient>[A-Za-z]+_\d+)_(?P<tb>[01])$")
# Montgomery: "Patient's Age: 027Y"; Shenzhen: "male 35yrs", "male 16month", "female 64days".
_AGE = re.compile(
    r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>years?|yrs?|y|months?|mo|m|weeks?|w|days?|d)\b",
    re.IGNORECASE,
)
_UNIT_YEARS = {"y": 1.0, "m": 1.0 / 12.0, "w": 7.0 / 365.25, "d": 1.0 / 365.25}
_MONTGOMERY_FIELD = re.compile(r"^\s*patient'?s\s+(?P<field>sex|age)\s*:\s*(?P<value>.*)$", re.I)
# Shenzhen's first line starts with the sex, sometimes misspelt ("femal").
_SHENZHEN_SEX = re.compile(r"^\s*(?P<sex>(?:fe?)?male?|f|m)\b", re.IGNORECASE)


def parse_age_years(text: str) -> float:
    """Age in years from an NLM reading fragment such as ``"045Y"`` or ``"male 16month"``.

    Args:
        text: the fragment holding the age (DICOM ``nnnY/M/W/D`` or ``35yrs``-style).

    Returns:
        The age in years, NaN when no age is found.
    """
    match = _AGE.search(text or "")
    if not match:
        return float("nan")
    unit = match["unit"].lower()
    factor = _UNIT_YEARS["m"] if unit.startswith("mo") else _UNIT_YEARS[unit[0]]
    return float(match["value"]) * factor


def parse_clinical_reading(text: str) -> dict[str, Any]:
    """Sex, age and finding text from one ``ClinicalReadings/<stem>.txt`` file.

    Montgomery files start with ``Patient's Sex: M`` and ``Patient's Age: 045Y`` lines;
    Shenzhen files start with ``male 45yrs``. Every other non-empty line is the reading.

    Args:
        text: the file's content.

    Returns:
        ``{"sex": "M"|"F"|"", "age": float (NaN when unknown), "reading": str}``.
    """
    sex, age, reading = "", float("nan"), []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        field = _MONTGOMERY_FIELD.match(line)
        if field:
            value = field["value"].strip()
            if field["field"].lower() == "sex":
                sex = value[:1].upper() if value[:1].upper() in ("M", "F") else ""
            else:
                age = parse_age_years(value)
            continue
        first = _SHENZHEN_SEX.match(line) if index == 0 else None
        if first:
            sex = first["sex"][0].upper()
            age_match = _AGE.search(line)
            age = parse_age_years(line)
            # A few readings continue on the sex/age line ("male 35yrs PTB ...").
            rest = line[age_match.end() :].strip() if age_match else line[first.end() :].strip()
            if rest:
                reading.append(rest)
            continue
        reading.append(line)
    return {"sex": sex, "age": age, "reading": " ".join(reading)}


@register
class NlmTuberculosisAdapter(SourceAdapter):
    """NLM Montgomery County and Shenzhen Hospital chest X-ray sets (tuberculosis screening).

    Source: U.S. National Library of Medicine, Lister Hill National Center for Biomedical
    Communications, "Tuberculosis Chest X-ray Datasets" (``MontgomerySet.zip``,
    ``ChinaSet_AllFiles.zip``).
    Citation: Jaeger S, Candemir S, Antani S, Wáng YX, Lu PX, Thoma G. Two public chest X-ray
    datasets for computer-aided screening of pulmonary diseases. Quant Imaging Med Surg
    2014;4(6):475-477. Lung masks: Candemir S et al., IEEE TMI 2014;33(2):577-590.
    Licence: released by the NLM for research and education, with attribution (the readme
    asks users to cite the papers above and not to redistribute outside the research group).
    Labels: ``_0`` -> normal, ``_1`` (tuberculosis) -> other; the reading text is the finding.

    Config keys (``ingest.sources.<id>``): ``archive`` (URL, or path under ``base_url``, or a
    list of them: one that cannot be fetched is reported and skipped),
    ``view`` (the view the collection documents, default ``""``).
    """

    source_ids: ClassVar[tuple[str, ...]] = ("montgomery", "shenzhen")
    citation: ClassVar[str] = (
        "Jaeger S et al. Two public chest X-ray datasets for computer-aided screening of "
        "pulmonary diseases. Quant Imaging Med Surg 2014;4(6):475-477."
    )
    license: ClassVar[str] = "NLM research use with attribution (no redistribution)"

    def _archive_roots(self, client: SourceClient) -> list[tuple[str, Path]]:
        archive = self.config.get("archive")
        if not archive:
            raise ValueError(
                f"{self.source_id}: set ingest.sources.{self.source_id}.archive to the NLM zip "
                "(a URL or a path under base_url)"
            )
        # An archive that cannot be fetched is reported and skipped (``failures``).
        return self.fetch_archives(client, archive, "archive")

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """One row per ``CXR_png/`` image, joined with its clinical reading."""
        rows = []
        for url, root in self._archive_roots(client):
            rows += self._archive_rows(client, url, root)
        return candidate_frame(rows)

    def _archive_rows(self, client: SourceClient, url: str, root: Path) -> list[dict[str, Any]]:
        images = {PurePosixPath(member).stem: member for member in archive_images(root, "CXR_png")}
        if not images:
            raise ValueError(
                f"{self.source_id}: no CXR_png/ images in {url}; expected the NLM layout "
                "(CXR_png/, ClinicalReadings/). Check ingest.sources."
                f"{self.source_id}.archive"
            )
        license_ = self.configured_license
        rows = []
        for stem, member in sorted(images.items()):
            match = _STEM.match(stem)
            if not match:
                logger.warning("%s: skipping %s (name not <SET>_<nnnn>_<0|1>)", url, member)
                continue
            reading = self._reading(root, member, stem)
            tuberculosis = match["tb"] == "1"
            row = candidate_row(
                self.source_id,
                member,
                client,
                covid_source=NOT_COVID_SOURCE,
                label="other" if tuberculosis else "normal",
                patient_id=match["patient"],
                age=reading["age"],
                sex=reading["sex"],
                view=str(self.config.get("view") or ""),
                finding=reading["reading"] or ("tuberculosis" if tuberculosis else "normal"),
                license=license_,
                flags=["tuberculosis"] if tuberculosis else [],
                local_path=str(root / member),
                archive_url=url,
            )
            rows.append(row)
        logger.info("%s: %d images listed from %s", self.source_id, len(rows), url)
        return rows

    def list_masks(self, client: SourceClient, images: pd.DataFrame) -> pd.DataFrame:
        """Left and right lung masks from ``ManualMask/`` (Montgomery only), full image size."""
        # Masks live beside their images: look in the archive each image came from.
        sides_by_url = {
            url: (
                root,
                {
                    structure: {PurePosixPath(m).stem: m for m in archive_images(root, side)}
                    for structure, side in (("left_lung", "leftMask"), ("right_lung", "rightMask"))
                },
            )
            for url, root in self._archive_roots(client)
        }
        rows = []
        for image_id, member, image_url in zip(
            images["image_id"], images["upstream_path"], images["url"], strict=True
        ):
            url = image_url.split("#", 1)[0]
            if url not in sides_by_url:
                continue
            root, sides = sides_by_url[url]
            stem = PurePosixPath(member).stem
            for structure, masks in sides.items():
                if stem not in masks:
                    continue
                rows.append(
                    {
                        "image_id": image_id,
                        "source_id": self.source_id,
                        "structure": structure,
                        "url": member_url(url, masks[stem]),
                        "offset_top": 0,
                        "offset_left": 0,
                        "scale_to_image": False,
                        "local_path": str(root / masks[stem]),
                    }
                )
        logger.info("%s: %d lung masks listed", self.source_id, len(rows))
        return mask_frame(rows)

    def _reading(self, root: Path, member: str, stem: str) -> dict[str, Any]:
        # ClinicalReadings/ sits beside CXR_png/ in both archives.
        readings = root / PurePosixPath(member).parent.parent / "ClinicalReadings"
        path = readings / f"{stem}.txt"
        if not path.is_file() or path.is_symlink():
            logger.warning("%s: no clinical reading for %s", self.source_id, member)
            return {"sex": "", "age": float("nan"), "reading": ""}
        return parse_clinical_reading(path.read_text(encoding="utf-8", errors="replace"))
