"""Adapter for Cohen et al.'s COVID-19 image data collection (github.com/ieee8023), live schema.

The repository keeps ``metadata.csv`` (one row per image: ``patientid, offset, sex, age,
finding, RT_PCR_positive, ..., view, modality, date, location, folder, filename, doi, url,
license, clinical_notes, other_notes``) and the files under ``images/`` (X-rays and CT slices)
and ``volumes/`` (CT NIfTI). Reading and mapping live in ``ieee8023_schema``, shared with the
GeneralBlockchain copies; this module adds the live repository's choices.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import pandas as pd

from covid_cxnet_pipeline.sources.base import SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import candidate_frame, is_image_path
from covid_cxnet_pipeline.sources.ieee8023_schema import (
    ieee8023_candidates,
    read_ieee8023_metadata,
)
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)


@register
class Ieee8023Adapter(SourceAdapter):
    """COVID-19 image data collection of Cohen, Morrison, Dao et al. (ieee8023), live repository.

    Source: https://github.com/ieee8023/covid-chestxray-dataset (``metadata.csv``, ``images/``).
    Citation: Cohen JP, Morrison P, Dao L, Roth K, Duong TQ, Ghassemi M. COVID-19 image data
    collection: prospective predictions are the future. MELBA 2020:002. arXiv:2006.11988.
    Licence: per image, in the ``license`` column (CC BY, CC BY-NC-SA, CC BY-NC-ND, Apache 2.0...;
    blank = not stated, kept as ``default_license``, "" unless configured).
    Labels (``labels.finding_label``): "Pneumonia/Viral/COVID-19" -> covid; "No Finding" ->
    normal; other bacterial/viral/fungal pneumonias -> cap; ARDS, lipoid, aspiration,
    tuberculosis, "Unknown", ``todo`` -> other.

    Decisions: rows whose ``modality`` is not in ``modalities`` (default ``["X-ray"]``) are not
    yielded: the collection's CT slices and volumes are not chest radiographs, and a flag would
    still put them in the image store. ``view`` is kept as given ("PA", "AP", "AP Supine", "L",
    ...): curation drops laterals. ``covid_source`` is ``cohen_ieee8023`` for every row, as for
    the collection's copies (``attribution``); ``covid_source_from_url: true`` attributes by
    each row's ``url`` instead (Radiopaedia, SIRM, EuroRad, Hannover...). Rows whose file is not
    an image (NIfTI volumes when ``modalities`` is null) are skipped.

    Config keys (``ingest.sources.ieee8023``): ``metadata_path`` (default ``metadata.csv``),
    ``images_dir`` (default ``images/``), ``modalities``, ``covid_source_from_url`` (default
    false), ``default_license`` (default ""), ``listing`` (when set, rows whose file is absent
    are skipped and unlisted images become ``other`` rows).
    """

    source_ids: ClassVar[tuple[str, ...]] = ("ieee8023",)
    citation: ClassVar[str] = (
        "Cohen JP et al. COVID-19 image data collection: prospective predictions are the "
        "future. MELBA 2020:002. arXiv:2006.11988"
    )
    license: ClassVar[str] = "per image (metadata.csv license column)"

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """One row per X-ray image described by ``metadata.csv``."""
        path = client.fetch_metadata(str(self.config.get("metadata_path", "metadata.csv")))
        metadata = read_ieee8023_metadata(path, self.source_id)
        # ``filename`` is a bare file name upstream; one holding a path ("/etc/x.png") would be
        # re-rooted under images/ by the shared reader, but it is not a name to trust at all.
        bare = ~metadata["filename"].str.contains(r"[/\\]", regex=True)
        if not bare.all():
            logger.warning(
                "%s: refusing %d metadata rows whose filename is a path, e.g. %r",
                self.source_id,
                int((~bare).sum()),
                metadata.loc[~bare, "filename"].iloc[0],
            )
            metadata = metadata[bare]
        files = client.list_files() if self.config.get("listing") else None
        modalities = self.config.get("modalities", ["X-ray"])
        frame = ieee8023_candidates(
            metadata,
            files,
            client,
            source_id=self.source_id,
            default_license=str(self.config.get("default_license") or ""),
            images_dir=str(self.config.get("images_dir", "images/")),
            modalities=list(modalities) if modalities is not None else None,
            covid_source_from_url=bool(self.config.get("covid_source_from_url", False)),
        )
        images = frame["upstream_path"].map(is_image_path).astype(bool)
        if not images.all():
            logger.info(
                "%s: %d rows name non-image files (e.g. CT volumes), skipped",
                self.source_id,
                int((~images).sum()),
            )
        return candidate_frame(frame[images].to_dict(orient="records"))
