"""Base class and registry for source adapters: one small module per upstream source.

An adapter turns one upstream metadata layout into candidate rows of the common schema
(``schema.RAW_INDEX_COLUMNS`` minus what only the download can know). The ingest pipeline
downloads, verifies and stores each candidate, then fills ``sha256``, ``width``, ``height`` and
``path``.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import pandas as pd

from covid_cxnet_pipeline.schema import RAW_INDEX_COLUMNS, RAW_MASK_INDEX_COLUMNS
from covid_cxnet_pipeline.sources.protocol import SourceClient

# Filled by the download step, so adapters do not produce them.
_DOWNLOAD_FILLED = ("sha256", "width", "height", "path")
# What an adapter yields per image: the schema's columns it knows, plus ``local_path``: the
# extracted file for images that came inside an archive ("" when ``url`` is to be downloaded).
CANDIDATE_COLUMNS = tuple(c for c in RAW_INDEX_COLUMNS if c not in _DOWNLOAD_FILLED) + (
    "local_path",
)
MASK_CANDIDATE_COLUMNS = tuple(c for c in RAW_MASK_INDEX_COLUMNS if c not in ("sha256", "path")) + (
    "local_path",
)

_REGISTRY: dict[str, type[SourceAdapter]] = {}


class SourceAdapter(ABC):
    """One upstream source. Subclasses set the class attributes and implement ``list_images``.

    Attributes:
        source_ids: the ``ingest.sources.<id>`` keys this adapter serves.
        citation: how to cite the source.
        license: the licence the upstream states (per-image licences go in rows).
    """

    source_ids: ClassVar[tuple[str, ...]] = ()
    citation: ClassVar[str] = ""
    license: ClassVar[str] = ""

    def __init__(self, source_id: str, config: dict[str, Any]):
        self.source_id = source_id
        self.config = config

    @abstractmethod
    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """Candidate image rows with exactly ``CANDIDATE_COLUMNS``."""

    def list_masks(self, client: SourceClient, images: pd.DataFrame) -> pd.DataFrame:
        """Candidate lung-mask rows with exactly ``MASK_CANDIDATE_COLUMNS`` (none by default)."""
        return empty_frame(MASK_CANDIDATE_COLUMNS)


def empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    """An empty table with the given columns."""
    return pd.DataFrame({column: pd.Series(dtype=object) for column in columns})


def register(cls: type[SourceAdapter]) -> type[SourceAdapter]:
    """Class decorator: make an adapter available under each of its ``source_ids``."""
    for source_id in cls.source_ids:
        if source_id in _REGISTRY:
            raise ValueError(f"source id {source_id!r} is registered twice")
        _REGISTRY[source_id] = cls
    return cls


def get_adapter(source_id: str, config: dict[str, Any]) -> SourceAdapter:
    """Instantiate the adapter for ``source_id`` with its ``ingest.sources.<id>`` block.

    Raises:
        KeyError: no adapter serves ``source_id``.
    """
    _import_adapters()
    try:
        cls = _REGISTRY[source_id]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(
            f"no adapter for source {source_id!r} (ingest.sources.{source_id}); known: {known}"
        ) from None
    return cls(source_id, config)


def registered_sources() -> list[str]:
    """Every source id an adapter serves."""
    _import_adapters()
    return sorted(_REGISTRY)


def _import_adapters() -> None:
    import covid_cxnet_pipeline.sources as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in ("base", "protocol"):
            importlib.import_module(f"{package.__name__}.{module.name}")
