"""Fixtures for adapter tests: the project's HTTP source client over the loopback mirror server."""

from __future__ import annotations

import pandas as pd
import pytest
import requests
import yaml

from covid_cxnet_pipeline.sources.base import get_adapter
from covid_cxnet_pipeline.sources.http_client import HttpSourceClient
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="session")
def base_sources() -> dict:
    """``ingest.sources`` from conf/base/parameters_ingest.yml (plain YAML, no resolvers)."""
    text = (PROJECT_ROOT / "conf" / "base" / "parameters_ingest.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["ingest"]["sources"]


@pytest.fixture(scope="session")
def mirror_client(mirror_url, tmp_path_factory):
    """Factory: an ``HttpSourceClient`` for ``source_id`` over the loopback mirror."""

    def _client(source_id: str) -> HttpSourceClient:
        return HttpSourceClient(
            source_id,
            f"{mirror_url}/{source_id}/",
            cache_dir=tmp_path_factory.mktemp(f"cache-{source_id}"),
            session=requests.Session(),
            listing="http_index",
        )

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
