"""Fixtures for adapter tests: a tiny test-only SourceClient over the loopback mirror server."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pandas as pd
import pytest
import requests
import yaml

from covid_cxnet_pipeline.sources.base import get_adapter
from covid_cxnet_pipeline.sources.protocol import SourceUnavailable
from tests.conftest import PROJECT_ROOT

_HREF = re.compile(r'href="([^"?#]+)"')


class MirrorTestClient:
    """Implements ``SourceClient`` over ``python -m http.server`` indexes, nothing more."""

    _counter = itertools.count()

    def __init__(self, source_id: str, base_url: str, cache_dir: Path):
        self.source_id = source_id
        self.base_url = base_url
        self.cache_dir = cache_dir

    def url(self, relpath: str) -> str:
        return self.base_url + quote(relpath)

    def _get(self, url: str) -> requests.Response:
        response = requests.get(url, timeout=30)
        if response.status_code != 200:
            raise SourceUnavailable(f"{self.source_id}: {url}: HTTP {response.status_code}")
        return response

    def fetch_metadata(self, relpath: str) -> Path:
        absolute = urlsplit(relpath).scheme in ("http", "https")
        response = self._get(relpath if absolute else self.url(relpath))
        dest = self.cache_dir / f"{next(self._counter)}-{Path(unquote(relpath)).name}"
        dest.write_bytes(response.content)
        return dest

    def list_files(self, prefix: str = "") -> list[str]:
        files, folders = [], [prefix.strip("/") + "/" if prefix.strip("/") else ""]
        while folders:
            current = folders.pop()
            for href in _HREF.findall(self._get(self.url(current)).text):
                name = unquote(href)
                (folders if name.endswith("/") else files).append(current + name)
        return sorted(files)

    def fetch_archive(self, relpath_or_url: str) -> Path:
        raise SourceUnavailable("the test client does not fetch archives")


@pytest.fixture(scope="session")
def base_sources() -> dict:
    """``ingest.sources`` from conf/base/parameters_ingest.yml (plain YAML, no resolvers)."""
    text = (PROJECT_ROOT / "conf" / "base" / "parameters_ingest.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["ingest"]["sources"]


@pytest.fixture(scope="session")
def mirror_client(mirror_url, tmp_path_factory):
    """Factory: a test client for ``source_id`` over the loopback mirror."""

    def _client(source_id: str) -> MirrorTestClient:
        cache = tmp_path_factory.mktemp(f"cache-{source_id}")
        return MirrorTestClient(source_id, f"{mirror_url}/{source_id}/", cache)

    return _client


@pytest.fixture(scope="session")
def mirror_adapter(base_sources, mirror_url):
    """Factory: the registered adapter for ``source_id`` with its conf/base block, where
    absolute URLs to other sources point at the mirror (as conf/mirror does)."""

    def _adapter(source_id: str):
        config = dict(base_sources[source_id])
        if "nih_labels_url" in config:
            labels_path = base_sources["nih_metadata_txv"]["labels_path"]
            config["nih_labels_url"] = f"{mirror_url}/nih_metadata_txv/{labels_path}"
        return get_adapter(source_id, config)

    return _adapter


@pytest.fixture(scope="session")
def manifest(shared_data) -> pd.DataFrame:
    """manifest.csv image rows, with the curator's "unknown" label spelt as ours ("other")."""
    table = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    images = table[table["kind"] == "image"].copy()
    images["label"] = images["label"].replace({"unknown": "other"})
    return images


@pytest.fixture(scope="session")
def listed(mirror_client, mirror_adapter):
    """Factory with a cache: (images, masks) an adapter lists from the mirror."""
    cache: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}

    def _listed(source_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        if source_id not in cache:
            client = mirror_client(source_id)
            adapter = mirror_adapter(source_id)
            images = adapter.list_images(client)
            cache[source_id] = (images, adapter.list_masks(client, images))
        return cache[source_id]

    return _listed
