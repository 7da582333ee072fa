"""Adapter for the NIH ChestX-ray14 label file as torchxrayvision ships it (metadata only).

``torchxrayvision/data/Data_Entry_2017_v2020.csv.gz`` is NIH's ``Data_Entry_2017_v2020.csv``:
``Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age, Patient Gender, View
Position, ...``. The source yields no images: collections of NIH images without labels (the
DarkCovidNet layout) read it through their ``nih_labels_url`` key, which points at this file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import pandas as pd

from covid_cxnet_pipeline.sources.base import CANDIDATE_COLUMNS, SourceAdapter, register
from covid_cxnet_pipeline.sources.candidates import (
    candidate_frame,
    read_metadata_csv,
    require_columns,
    setting,
)
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

NIH_COLUMNS = (
    "Image Index",
    "Finding Labels",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
)


def read_nih_labels(path: Path, source_id: str) -> pd.DataFrame:
    """Read an NIH ``Data_Entry_2017*.csv[.gz]`` as strings indexed by ``Image Index``.

    Args:
        path: the cached label file (plain or gzip-compressed CSV).
        source_id: for the error message.

    Returns:
        The ``NIH_COLUMNS`` (and any others), one row per image file name.

    Raises:
        ValueError: a required column is missing.
    """
    labels = read_metadata_csv(path)
    require_columns(
        labels,
        NIH_COLUMNS,
        where=f"{source_id}: {path}",
        kind="NIH",
        hint=f"does ingest.sources.{source_id} point at Data_Entry_2017*.csv from ChestX-ray14?",
    )
    labels["Image Index"] = labels["Image Index"].str.strip()
    labels = labels.drop_duplicates("Image Index")
    return labels.set_index("Image Index", drop=False)


@register
class NihMetadataTorchxrayvision(SourceAdapter):
    """NIH ChestX-ray14 label file, from the torchxrayvision repository (metadata only).

    Citation: Wang X., Peng Y., Lu L., Lu Z., Bagheri M., Summers R. M., "ChestX-ray8:
    Hospital-scale chest X-ray database and benchmarks...", CVPR 2017; file as shipped by Cohen
    J. P. et al., "TorchXRayVision", MIDL 2022 (github.com/mlmed/torchxrayvision).
    Licence: the NIH Clinical Center release has no restrictions (acknowledge the NIH CC); the
    torchxrayvision repository is Apache-2.0.
    Labels: none yielded (no images); consumers map ``Finding Labels`` with ``labels.nih_label``
    ("No Finding" -> normal, any "Pneumonia" -> cap, else other).

    Config keys: ``labels_path``.
    """

    source_ids: ClassVar[tuple[str, ...]] = ("nih_metadata_txv",)
    citation: ClassVar[str] = (
        "Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8. CVPR 2017; "
        "Cohen JP et al. TorchXRayVision. MIDL 2022"
    )
    license: ClassVar[str] = "NIH Clinical Center public release (file in an Apache-2.0 repo)"
    # The ingest pipeline accepts an empty image list from this source.
    metadata_only: ClassVar[bool] = True

    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """Check that the label file is reachable and readable; yield no images.

        Raises:
            SourceUnavailable: the file cannot be downloaded.
            ValueError: the file is not an NIH label file.
        """
        labels_path = setting(self.config, self.source_id, "labels_path")
        labels = read_nih_labels(client.fetch_metadata(labels_path), self.source_id)
        logger.info("%s: %d NIH label rows (metadata only, no images)", self.source_id, len(labels))
        return candidate_frame([])[list(CANDIDATE_COLUMNS)]
