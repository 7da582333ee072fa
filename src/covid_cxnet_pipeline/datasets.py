"""Project Kedro datasets: the content-addressed image store, declared through its manifest.

The store's files are written by the ingest download step (they are far too many to pass through
Kedro); the catalog entry pins which of them a run produced, as a versioned Parquet manifest,
after checking every listed file is really there.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractVersionedDataset, DatasetError
from kedro.io.core import Version

MANIFEST_COLUMNS = ("sha256", "path", "kind")


class ImageStoreDataset(AbstractVersionedDataset[pd.DataFrame, pd.DataFrame]):
    """A folder of files named by content hash, with a versioned Parquet manifest.

    Example catalog entry::

        image_store:
          type: covid_cxnet_pipeline.datasets.ImageStoreDataset
          root: data/01_raw/image_store  # must match download.store_root
          filepath: data/01_raw/image_store_manifest.parquet
          versioned: true
    """

    def __init__(
        self,
        *,
        root: str,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        """Create the dataset.

        Args:
            root: the store folder (``download.store_root``).
            filepath: where the manifest Parquet goes (versioned when ``version`` is set).
            version: Kedro version (set by the catalog when ``versioned: true``).
            metadata: free-form metadata (kedro-viz shows it).
        """
        super().__init__(PurePosixPath(filepath), version)
        self._root = Path(root)
        self.metadata = metadata

    @property
    def root(self) -> Path:
        """The store folder."""
        return self._root

    def load(self) -> pd.DataFrame:
        """The manifest: one row per stored file (``sha256, path, kind``)."""
        return pd.read_parquet(str(self._get_load_path()))

    def save(self, data: pd.DataFrame) -> None:
        """Check that every file in the manifest exists inside ``root``, then write it.

        Raises:
            DatasetError: missing columns, a file outside ``root`` (``root`` and
                ``download.store_root`` disagree) or a missing file.
        """
        missing_columns = set(MANIFEST_COLUMNS) - set(data.columns)
        if missing_columns:
            raise DatasetError(f"image store manifest lacks columns {sorted(missing_columns)}")
        root = self._root.resolve()
        for path in data["path"]:
            resolved = Path(path).resolve()
            if not resolved.is_relative_to(root):
                raise DatasetError(
                    f"{path} is outside the image store {self._root}: make the catalog's "
                    "image_store.root match the parameter download.store_root"
                )
            if not resolved.is_file():
                raise DatasetError(f"image store file {path} listed in the manifest is missing")
        save_path = Path(str(self._get_save_path()))
        save_path.parent.mkdir(parents=True, exist_ok=True)
        data.loc[:, list(MANIFEST_COLUMNS)].to_parquet(save_path, index=False)
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            return Path(str(self._get_load_path())).is_file()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"root": str(self._root), "filepath": str(self._filepath), "version": self._version}

    def _invalidate_cache(self) -> None:
        # Kedro caches the resolved load version; a new save must be visible to the next load.
        self._clear_version_cache()
