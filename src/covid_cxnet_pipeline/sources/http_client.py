"""The HTTP implementation of ``SourceClient``: metadata, listings and archives of one source.

Everything it fetches is cached under ``<cache_dir>/<source_id>/`` keyed by URL, so a re-run
transfers nothing (upstream URLs pin a commit or a release; set
``download.refresh_metadata: true`` to fetch metadata and listings again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from covid_cxnet_pipeline.archives import ArchiveError, extract_archive
from covid_cxnet_pipeline.download import (
    DownloadError,
    download_file,
    timeout_from_params,
    write_atomically,
)
from covid_cxnet_pipeline.listing import (
    ListingError,
    github_tree,
    http_index,
    quote_relpath,
    safe_relpath,
)
from covid_cxnet_pipeline.sources.protocol import SourceUnavailable

logger = logging.getLogger(__name__)

_LISTINGS = ("github_tree", "http_index")


class HttpSourceClient:
    """Reach one configured source over HTTP(S); implements ``sources.protocol.SourceClient``.

    Attributes:
        source_id: the ``ingest.sources`` key.
        base_url: the source root, ending with "/".
        bytes_transferred: bytes this client received (metadata, listings, archives).
    """

    def __init__(
        self,
        source_id: str,
        base_url: str,
        *,
        cache_dir: str | os.PathLike,
        session: requests.Session,
        timeout: tuple[float, float] = (10.0, 60.0),
        listing: str | None = None,
        listing_url: str | None = None,
        max_archive_bytes: int = 50 * 2**30,
        max_metadata_bytes: int | None = None,
        refresh_metadata: bool = False,
        progress: bool = True,
    ):
        if not base_url or urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(
                f"ingest.sources.{source_id}.base_url must be an http(s) URL, got {base_url!r}"
            )
        if listing is not None and listing not in _LISTINGS:
            raise ValueError(
                f"ingest.sources.{source_id}.listing must be one of {_LISTINGS} or null, "
                f"got {listing!r}"
            )
        self.source_id = source_id
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.listing = listing
        self.listing_url = listing_url
        self.session = session
        self.timeout = timeout
        self.max_archive_bytes = max_archive_bytes
        self.max_metadata_bytes = max_metadata_bytes
        self.refresh_metadata = refresh_metadata
        self.progress = progress
        self.cache_dir = Path(cache_dir) / _safe_name(source_id)
        self._lock = threading.Lock()
        self._bytes = 0

    @classmethod
    def from_config(
        cls,
        source_id: str,
        source_config: dict[str, Any],
        download_params: dict[str, Any],
        session: requests.Session,
    ) -> HttpSourceClient:
        """Build the client from ``ingest.sources.<id>`` and the ``download`` parameters.

        Args:
            source_id: the source key.
            source_config: its block (``base_url``, ``listing``, ``listing_url``...).
            download_params: ``params:download`` (``cache_dir``, timeouts, size limits).
            session: a session from ``download.make_session``.

        Returns:
            The client.
        """
        max_metadata = download_params.get("max_metadata_bytes")
        return cls(
            source_id,
            str(source_config.get("base_url") or ""),
            cache_dir=download_params.get("cache_dir", "data/01_raw/cache"),
            session=session,
            timeout=timeout_from_params(download_params),
            listing=source_config.get("listing"),
            listing_url=source_config.get("listing_url"),
            max_archive_bytes=int(download_params.get("max_archive_bytes", 50 * 2**30)),
            max_metadata_bytes=int(max_metadata) if max_metadata else None,
            refresh_metadata=bool(download_params.get("refresh_metadata", False)),
            progress=bool(download_params.get("progress", True)),
        )

    @property
    def bytes_transferred(self) -> int:
        """Bytes received so far by this client."""
        with self._lock:
            return self._bytes

    def _count(self, received: int) -> None:
        with self._lock:
            self._bytes += received

    def url(self, relpath: str) -> str:
        """The absolute URL of ``relpath`` inside the source (segments quoted).

        Raises:
            ValueError: ``relpath`` is absolute or has ``..`` components.
        """
        clean = safe_relpath(relpath.strip("/") if relpath.endswith("/") else relpath)
        if clean is None:
            raise ValueError(f"source {self.source_id}: unsafe relative path {relpath!r}")
        return self.base_url + quote_relpath(clean)

    def fetch_metadata(self, relpath: str) -> Path:
        """Download a metadata file into the cache (once) and return its path.

        Args:
            relpath: a path inside the source, or an absolute http(s) URL (a label file that
                another repository publishes).

        Raises:
            SourceUnavailable: the file cannot be downloaded after retries.
        """
        url = self._resolve(relpath)
        dest = self._cache_path("metadata", url)
        if dest.is_file() and not self.refresh_metadata:
            return dest
        self._download(url, dest, "metadata", max_bytes=self.max_metadata_bytes)
        return dest

    def list_files(self, prefix: str = "") -> list[str]:
        """Relative paths of every file under ``prefix``, sorted, from the configured listing.

        Raises:
            SourceUnavailable: no listing is configured, or it cannot be read.
        """
        prefix = prefix.strip("/")
        everything = self._all_files(prefix if self.listing == "http_index" else "")
        if not prefix:
            return list(everything)
        return [path for path in everything if path.startswith(prefix + "/")]

    def _all_files(self, start: str) -> list[str]:
        if self.listing is None:
            raise SourceUnavailable(
                f"source {self.source_id}: no listing configured; set "
                f"ingest.sources.{self.source_id}.listing to github_tree or http_index"
            )
        if self.listing == "github_tree" and not self.listing_url:
            raise SourceUnavailable(
                f"source {self.source_id}: listing github_tree needs "
                f"ingest.sources.{self.source_id}.listing_url (the git/trees API URL)"
            )
        key = f"{self.listing} {self.listing_url or self.base_url} {start}"
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        cached = self.cache_dir / "listings" / f"{digest}.json"
        if cached.is_file() and not self.refresh_metadata:
            return json.loads(cached.read_text(encoding="utf-8"))
        try:
            if self.listing == "github_tree":
                files = github_tree(str(self.listing_url), self._get_text)
            else:
                files = http_index(self.base_url, self._get_text, prefix=start)
        except (ListingError, DownloadError) as error:
            raise SourceUnavailable(
                f"source {self.source_id}: cannot read its {self.listing} listing "
                f"({self.listing_url or self.base_url}): {error}"
            ) from None
        write_atomically(cached, json.dumps(files).encode("utf-8"))
        return files

    def _get_text(self, url: str) -> str:
        try:
            response = self.session.get(url, timeout=self.timeout)
        except requests.exceptions.Timeout:
            raise DownloadError(url, "timeout") from None
        except requests.exceptions.RequestException as error:
            raise DownloadError(url, f"connection error: {error}") from None
        if response.status_code >= 400:
            raise DownloadError(url, f"HTTP {response.status_code}")
        self._count(len(response.content))
        return response.text

    def fetch_archive(self, relpath_or_url: str) -> Path:
        """Download an archive (once), extract it safely (once) and return the folder.

        Raises:
            SourceUnavailable: the archive cannot be downloaded, read or is refused as unsafe.
        """
        url = self._resolve(relpath_or_url)
        archive = self._cache_path("archives", url)
        if not archive.is_file():
            # Archives are the big files (NIH: ~4.5 GB each): show their bytes as they come.
            self._download(
                url,
                archive,
                "archive",
                # Compressed bytes never exceed what the archive may unpack to, so the
                # same cap stops an endless or hostile body before the disk fills.
                max_bytes=self.max_archive_bytes,
                progress=self.progress,
                description=f"{self.source_id} {urlsplit(url).path.rsplit('/', 1)[-1]}",
            )
        try:
            return extract_archive(
                archive,
                self.cache_dir / "extracted",
                max_total_bytes=self.max_archive_bytes,
                progress=self.progress,
            )
        except ArchiveError as error:
            raise SourceUnavailable(
                f"source {self.source_id}: archive {url} refused: {error}"
            ) from None

    def _download(self, url: str, dest: Path, what: str, **kwargs: Any) -> None:
        """``download_file`` with this client's session and timeout, counting the bytes.

        Raises:
            SourceUnavailable: naming the source, ``what`` and the URL.
        """
        try:
            result = download_file(url, dest, session=self.session, timeout=self.timeout, **kwargs)
        except DownloadError as error:
            raise SourceUnavailable(
                f"source {self.source_id}: cannot download {what} {url}: {error.reason}"
            ) from None
        self._count(result.bytes_transferred)

    def _resolve(self, relpath_or_url: str) -> str:
        if urlsplit(relpath_or_url).scheme in ("http", "https"):
            return relpath_or_url
        return self.url(relpath_or_url)

    def _cache_path(self, kind: str, url: str) -> Path:
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
        name = _safe_name(urlsplit(url).path.rsplit("/", 1)[-1])[:80]
        return self.cache_dir / kind / (f"{digest}-{name}" if name else digest)


def _safe_name(name: str) -> str:
    """A file-name-safe version of an untrusted name (keeps extensions such as ``.csv.gz``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
