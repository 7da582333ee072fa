"""The contract between source adapters and the download layer.

An adapter knows one upstream layout (which metadata files exist, how they map to the common
schema); a ``SourceClient`` knows how to reach that layout (base URL, directory listings, archives)
and does all network and disk work. Adapters never touch the network themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class SourceUnavailable(RuntimeError):
    """A source's metadata, listing or archive could not be obtained at all."""


class SourceClient(Protocol):
    """What an adapter may ask of the network layer for one configured source."""

    source_id: str
    base_url: str  # always ends with "/"

    def url(self, relpath: str) -> str:
        """The absolute URL of ``relpath`` inside the upstream layout (path segments quoted)."""
        ...

    def fetch_metadata(self, relpath: str) -> Path:
        """Download a small metadata file (CSV, JSON, gz...) into the cache and return its path.

        Raises:
            SourceUnavailable: the file cannot be downloaded (after retries).
        """
        ...

    def list_files(self, prefix: str = "") -> list[str]:
        """Relative paths (from the source root) of every file under ``prefix``, sorted.

        Uses the listing method configured for the source (``listing: github_tree`` reads the
        GitHub git-trees API at ``listing_url``; ``listing: http_index`` walks HTML directory
        indexes such as those of ``python -m http.server``).

        Raises:
            SourceUnavailable: no listing is configured or it cannot be read.
        """
        ...

    def fetch_archive(self, relpath_or_url: str) -> Path:
        """Download an archive (zip, tar, tar.gz), extract it safely, return the extracted folder.

        Extraction refuses absolute paths, ``..`` components, links and special files, and is
        cached: a second call with the same archive reuses the folder.

        Raises:
            SourceUnavailable: the archive cannot be downloaded or is not a readable archive.
        """
        ...
