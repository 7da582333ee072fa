"""Fixtures for curation tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def curate_params(tmp_path) -> dict:
    """The project's curate parameters, with the feature cache in tmp_path and one worker."""
    text = (PROJECT_ROOT / "conf/base/parameters_curate.yml").read_text()
    params = copy.deepcopy(yaml.safe_load(text)["curate"])
    params["features"]["cache_path"] = str(tmp_path / "feature_cache.parquet")
    params["features"]["workers"] = 1
    params["filters"]["quality"]["min_width"] = 64
    params["filters"]["quality"]["min_height"] = 64
    return params
