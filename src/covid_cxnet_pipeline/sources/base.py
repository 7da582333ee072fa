"""Base class and registry for source adapters: one small module per upstream source.

An adapter turns one upstream metadata layout into candidate rows of the common schema
(``schema.RAW_INDEX_COLUMNS`` minus what only the download can know). The ingest pipeline
downloads, verifies and stores each candidate, then fills ``sha256``, ``width``, ``height`` and
``path``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from covid_cxnet_pipeline.schema import RAW_INDEX_COLUMNS, RAW_MASK_INDEX_COLUMNS
from covid_cxnet_pipeline.sources.protocol import SourceClient, SourceUnavailable

logger = logging.getLogger(__name__)

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
        metadata_only: the source publishes only metadata (a label file other sources join),
            so an empty image list is not a failure (``ingest.sources.<id>.metadata_only``
            overrides it).
        failures: parts of the source that failed without failing it (an archive among
            several), as ingest report rows ``{"url", "reason", "stage"}``.
    """

    source_ids: ClassVar[tuple[str, ...]] = ()
    citation: ClassVar[str] = ""
    license: ClassVar[str] = ""
    metadata_only: ClassVar[bool] = False

    def __init__(self, source_id: str, config: dict[str, Any]):
        self.source_id = source_id
        self.config = config
        self.failures: list[dict[str, str]] = []
        self._archives: dict[str, tuple[str, Path | None, str]] = {}

    @property
    def configured_license(self) -> str:
        """Licence for rows without their own: the config's ``license``, else the class's."""
        return str(self.config.get("license") or self.license)

    @abstractmethod
    def list_images(self, client: SourceClient) -> pd.DataFrame:
        """Candidate image rows with exactly ``CANDIDATE_COLUMNS``."""

    def list_masks(self, client: SourceClient, images: pd.DataFrame) -> pd.DataFrame:
        """Candidate lung-mask rows with exactly ``MASK_CANDIDATE_COLUMNS`` (none by default)."""
        return empty_frame(MASK_CANDIDATE_COLUMNS)

    def fetch_archives(
        self, client: SourceClient, archives: str | Sequence[str], key: str
    ) -> list[tuple[str, Path]]:
        """Fetch and extract each archive; one that fails becomes a row of ``failures``.

        A 42 GB source split in twelve archives should not be lost to one broken download, so
        only a source whose every archive fails is unavailable. Results are kept per adapter,
        so ``list_masks`` reuses what ``list_images`` fetched (and reports nothing twice).

        Args:
            client: the source's client.
            archives: archive URLs or paths under ``base_url`` (a single one as a string).
            key: the config key that lists them, for error messages.

        Returns:
            ``(archive URL, extracted folder)`` of each archive that could be used, in order.

        Raises:
            ValueError: no archive is configured.
            SourceUnavailable: every archive failed.
        """
        names = [archives] if isinstance(archives, str) else list(archives or [])
        if not names:
            raise ValueError(f"ingest.sources.{self.source_id}.{key} is empty: list an archive")
        fetched, reasons = [], []
        for archive in names:
            if archive not in self._archives:
                url = (
                    archive if archive.startswith(("http://", "https://")) else client.url(archive)
                )
                try:
                    self._archives[archive] = (url, client.fetch_archive(archive), "")
                except SourceUnavailable as error:
                    logger.warning("%s: archive skipped: %s", self.source_id, error)
                    self._archives[archive] = (url, None, str(error))
                    self.failures.append({"url": url, "reason": str(error), "stage": "archive"})
            url, root, reason = self._archives[archive]
            if root is None:
                reasons.append(reason)
            else:
                fetched.append((url, root))
        if not fetched:
            raise SourceUnavailable(
                f"source {self.source_id}: none of its {len(names)} archive(s) could be used "
                f"(ingest.sources.{self.source_id}.{key}): " + "; ".join(reasons)
            )
        return fetched


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
