"""Project-level checks: configuration resolves in every environment and the public pipeline
names the issues promise are registered."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project, pipelines

from tests.conftest import PROJECT_ROOT

PUBLIC_PIPELINES = (
    "ingest",
    "curate",
    "train_segmentation",
    "preprocess",
    "train_binary",
    "train_multiclass",
    "evaluate",
    "predict",
)


@pytest.fixture(scope="module")
def registered():
    configure_project("covid_cxnet_pipeline")
    return pipelines


@pytest.mark.parametrize("name", PUBLIC_PIPELINES)
def test_public_pipeline_is_registered(registered, name):
    assert name in registered, f"pipeline {name!r} is not registered"
    assert len(registered[name].nodes) > 0


def _loader(env: str) -> OmegaConfigLoader:
    from covid_cxnet_pipeline.settings import CONFIG_LOADER_ARGS

    return OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"),
        env=env,
        **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"},
    )


@pytest.mark.parametrize("env", ["base", "mirror"])
def test_configuration_resolves(env, monkeypatch):
    monkeypatch.setenv("CXR_MIRROR_URL", "http://127.0.0.1:9")
    loader = _loader(env if env != "base" else "local")
    params = loader["parameters"]
    catalog = loader["catalog"]
    assert params and catalog
    assert loader["mlflow"]["server"]["mlflow_tracking_uri"]


def test_mirror_environment_points_mirrored_sources_at_the_mirror(shared_data, monkeypatch):
    monkeypatch.setenv("CXR_MIRROR_URL", "http://127.0.0.1:9")
    sources = _loader("mirror")["parameters"]["ingest"]["sources"]
    mirrored = (shared_data / "mirror").iterdir()
    for folder in (p.name for p in mirrored if p.is_dir()):
        assert sources[folder]["base_url"] == f"http://127.0.0.1:9/{folder}/"
    for absent in ("ieee8023", "hannover_mhh", "nih_cxr14", "kermany", "montgomery", "shenzhen"):
        assert sources[absent]["enabled"] is False
