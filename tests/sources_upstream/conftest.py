"""Fixtures for the upstream-layout adapter tests: a small SourceClient and fixture builders.

``LoopbackClient`` implements ``sources.protocol.SourceClient`` with plain ``requests`` calls
against a loopback server, so these tests exercise each adapter through real HTTP without
depending on the production download layer. Archives are extracted with the same refusals the
protocol promises (absolute names, ``..``, links, special files).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pytest
import requests

from covid_cxnet_pipeline.sources.protocol import SourceUnavailable


class LoopbackClient:
    """A minimal SourceClient over HTTP for tests (no retries; listing = walk the served folder)."""

    def __init__(
        self, source_id: str, base_url: str, cache_dir: Path, listing_root: Path | None = None
    ):
        self.source_id = source_id
        self.listing_root = listing_root
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.cache_dir = cache_dir
        self.archive_calls: list[str] = []

    def url(self, relpath: str) -> str:
        """The absolute URL of ``relpath`` under ``base_url``, path segments quoted."""
        return self.base_url + "/".join(quote(part) for part in relpath.split("/"))

    def _download(self, url: str, target: Path) -> Path:
        response = requests.get(url, timeout=10)
        if response.status_code != 200:
            raise SourceUnavailable(f"{self.source_id}: GET {url} -> {response.status_code}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)
        return target

    def fetch_metadata(self, relpath: str) -> Path:
        """Download ``relpath`` into the cache."""
        return self._download(self.url(relpath), self.cache_dir / "metadata" / relpath)

    def list_files(self, prefix: str = "") -> list[str]:
        """Every file under ``prefix`` of the served folder, when the test enables a listing."""
        if self.listing_root is None:
            raise SourceUnavailable(f"{self.source_id}: no listing configured (test client)")
        files = sorted(
            path.relative_to(self.listing_root).as_posix()
            for path in self.listing_root.rglob("*")
            if path.is_file()
        )
        prefix = prefix.strip("/")
        return [f for f in files if not prefix or f.startswith(prefix + "/")]

    def fetch_archive(self, relpath_or_url: str) -> Path:
        """Download and safely extract a zip or tar archive; cached per archive."""
        self.archive_calls.append(relpath_or_url)
        is_url = relpath_or_url.startswith(("http://", "https://"))
        url = relpath_or_url if is_url else self.url(relpath_or_url)
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        target = self.cache_dir / "archives" / key
        if target.is_dir():
            return target
        blob = self._download(url, self.cache_dir / "downloads" / key)
        staging = target.with_name(key + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        if zipfile.is_zipfile(blob):
            _extract_zip(blob, staging)
        elif tarfile.is_tarfile(blob):
            _extract_tar(blob, staging)
        else:
            raise SourceUnavailable(f"{self.source_id}: {url} is not a zip or tar archive")
        staging.rename(target)
        return target


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise SourceUnavailable(f"unsafe archive member {name!r}")
    return path


def _extract_zip(blob: Path, target: Path) -> None:
    with zipfile.ZipFile(blob) as archive:
        for info in archive.infolist():
            member = _safe_member(info.filename)
            if info.is_dir():
                continue
            out = target / member
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst)


def _extract_tar(blob: Path, target: Path) -> None:
    with tarfile.open(blob) as archive:
        for info in archive.getmembers():
            member = _safe_member(info.name)
            if not info.isfile():
                continue
            out = target / member
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.extractfile(info) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst)


@pytest.fixture
def loopback_client(tmp_path, serve_directory):
    """Factory: serve ``folder`` on 127.0.0.1 and return a LoopbackClient for ``source_id``
    (``listing=True`` lists the served folder, as a github_tree or http_index listing would)."""

    def _make(source_id: str, folder: Path, listing: bool = False) -> LoopbackClient:
        base_url = serve_directory(folder) + "/"
        cache = tmp_path / f"cache_{source_id}"
        return LoopbackClient(source_id, base_url, cache, folder if listing else None)

    return _make


def shared_images(shared_data: Path, source_folder: str, pattern: str, count: int) -> list[Path]:
    """The first ``count`` real shared images of ``source_folder`` matching ``pattern``, sorted."""
    found = sorted((shared_data / "mirror" / source_folder).glob(pattern))
    if len(found) < count:
        pytest.skip(f"needs {count} images matching {pattern} in shared/{source_folder}")
    return found[:count]


def write_zip(archive: Path, members: dict[str, bytes]) -> None:
    """Write a zip archive with the given member names and contents."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        for name, data in members.items():
            out.writestr(name, data)


def write_tar_gz(archive: Path, members: dict[str, bytes]) -> None:
    """Write a gzipped tar archive with the given member names and contents."""
    with tarfile.open(archive, "w:gz") as out:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def sha256_of(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def fetch_bytes(url: str) -> bytes:
    """GET ``url`` (a loopback URL) and return its body; fails the test on a non-200."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, f"{url} -> {response.status_code}"
    return response.content


@pytest.fixture
def http_source_client(tmp_path, serve_directory):
    """Factory: the production ``HttpSourceClient`` over ``folder`` served on 127.0.0.1."""
    from covid_cxnet_pipeline.download import make_session
    from covid_cxnet_pipeline.sources.http_client import HttpSourceClient

    def _make(source_id: str, folder: Path):
        base_url = serve_directory(folder) + "/"
        session = make_session(retries=0)
        return HttpSourceClient(
            source_id, base_url, cache_dir=tmp_path / "http_cache", session=session
        )

    return _make
