"""The ingest pipeline on an in-memory catalog over the loopback mirror of ../shared/data."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from covid_cxnet_pipeline.pipelines.ingest import create_pipeline
from covid_cxnet_pipeline.pipelines.ingest.nodes import (
    REPORT_COLUMNS,
    SourceFailedError,
    ingest_metrics,
)
from covid_cxnet_pipeline.schema import COVID_SOURCES, RAW_INDEX_COLUMNS, RAW_MASK_INDEX_COLUMNS
from tests.conftest import PROJECT_ROOT
from tests.http_faults import FaultPlan, FaultServer

SOURCES = ("figure1_covid", "shenzhen_montgomery_seg")


def source_params(mirror_url: str, monkeypatch) -> dict:
    """The two sources' blocks exactly as conf/base + conf/mirror give them; the rest disabled."""
    from covid_cxnet_pipeline.settings import CONFIG_LOADER_ARGS

    monkeypatch.setenv("CXR_MIRROR_URL", mirror_url)
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"),
        env="mirror",
        **{key: value for key, value in CONFIG_LOADER_ARGS.items() if key != "default_run_env"},
    )
    sources = loader["parameters"]["ingest"]["sources"]
    return {source_id: dict(sources[source_id], enabled=True) for source_id in SOURCES}


def download_params(tmp_path: Path, **overrides) -> dict:
    params = {
        "workers": 4,
        "retries": 1,
        "backoff_factor": 0.0,
        "connect_timeout_s": 5,
        "read_timeout_s": 10,
        "store_root": str(tmp_path / "image_store"),
        "cache_dir": str(tmp_path / "cache"),
        "max_archive_bytes": 1 << 20,
        "fail_on_source_error": True,
        "progress": False,
    }
    return params | overrides


class KeptDataset(MemoryDataset):
    """A memory dataset the runner cannot release, so the test can read every output."""

    def _release(self) -> None:
        pass


OUTPUTS = (
    "raw_index",
    "raw_mask_index",
    "ingest_report",
    "ingest_report_csv",
    "ingest_metrics",
    "image_store",
)


def ingest_catalog(ingest: dict, download: dict) -> DataCatalog:
    return DataCatalog(
        {
            "params:ingest": MemoryDataset(ingest),
            "params:download": MemoryDataset(download),
        }
        | {name: KeptDataset() for name in OUTPUTS}
    )


def run_ingest(ingest: dict, download: dict) -> dict[str, object]:
    catalog = ingest_catalog(ingest, download)
    SequentialRunner().run(create_pipeline(), catalog)
    return {name: catalog[name].load() for name in OUTPUTS}


def manifest_images(shared_data: Path, source_id: str) -> pd.DataFrame:
    manifest = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    return manifest[(manifest["source_id"] == source_id) & (manifest["kind"] == "image")]


def test_ingest_two_mirrored_sources_then_rerun_transfers_nothing(
    shared_data, mirror_url, tmp_path, monkeypatch
):
    ingest = {"sources": source_params(mirror_url, monkeypatch)}
    first = run_ingest(ingest, download_params(tmp_path))
    raw_index = first["raw_index"]
    assert tuple(raw_index.columns) == RAW_INDEX_COLUMNS
    assert raw_index["image_id"].is_unique
    assert tuple(first["raw_mask_index"].columns) == RAW_MASK_INDEX_COLUMNS
    assert tuple(first["ingest_report"].columns) == REPORT_COLUMNS
    assert first["ingest_report"].empty

    for source_id in SOURCES:
        expected = manifest_images(shared_data, source_id)
        ingested = raw_index[raw_index["source_id"] == source_id]
        assert len(ingested) == len(expected), source_id
        # Byte-for-byte the mirror's files, stored under their own hash.
        assert set(ingested["sha256"]) == set(expected["sha256"])
        ingested_sizes = ingested.set_index("sha256")[["width", "height"]].astype(str)
        expected_sizes = expected.set_index("sha256")[["width", "height"]]
        pd.testing.assert_frame_equal(
            ingested_sizes.sort_index(), expected_sizes.sort_index(), check_names=False
        )
    sample = raw_index.iloc[0]
    assert hashlib.sha256(Path(sample["path"]).read_bytes()).hexdigest() == sample["sha256"]
    assert (
        Path(sample["path"]).name == sample["sha256"] + Path(sample["upstream_path"]).suffix.lower()
    )
    assert len(first["raw_mask_index"]) == 60  # one both-lungs mask per Shenzhen/Montgomery image

    metrics = {name: value["value"] for name, value in first["ingest_metrics"].items()}
    assert metrics["images"] == len(raw_index)
    assert metrics["images.source.figure1_covid"] == 53
    assert metrics["images.source.figure1_covid.covid_source.figure1"] == 53
    assert metrics["failures"] == 0
    assert metrics["bytes_transferred"] > 1_000_000
    assert set(first["image_store"]["path"]) >= set(raw_index["path"])

    second = run_ingest(ingest, download_params(tmp_path))
    second_metrics = {name: value["value"] for name, value in second["ingest_metrics"].items()}
    assert second_metrics["bytes_transferred"] == 0
    pd.testing.assert_frame_equal(second["raw_index"], raw_index)


def test_ingest_metrics_count_covid_sources_overall_and_per_source():
    # Four armiro images over two of its categories and one image of a non-COVID collection.
    raw_index = pd.DataFrame(
        {
            "source_id": ["armiro", "armiro", "armiro", "armiro", "nih"],
            "label": ["covid", "covid", "covid", "normal", "normal"],
            "covid_source": ["sirm", "sirm", "radiopaedia", "not_covid_source", "not_covid_source"],
        }
    )
    metrics = ingest_metrics(
        raw_index=raw_index,
        raw_mask_index=pd.DataFrame({"source_id": ["nih"]}),
        ingest_report=pd.DataFrame({"source_id": pd.Series([], dtype=str)}),
        source_summary=pd.DataFrame({"source_id": ["armiro", "nih"], "metadata_bytes": [10, 0]}),
        stored_images=pd.DataFrame({"bytes_transferred": [5, 5, 5, 5, 5]}),
        stored_masks=pd.DataFrame({"bytes_transferred": [7]}),
    )
    values = {name: value["value"] for name, value in metrics.items()}
    overall = {
        name.removeprefix("images.covid_source."): value
        for name, value in values.items()
        if name.startswith("images.covid_source.")
    }
    # Every category of the schema, absent ones as 0, so runs compare category by category.
    assert set(overall) == set(COVID_SOURCES)
    assert {name: value for name, value in overall.items() if value} == {
        "sirm": 2.0,
        "radiopaedia": 1.0,
        "not_covid_source": 2.0,
    }
    assert values["images.source.armiro.covid_source.sirm"] == 2.0
    assert values["images.source.armiro.covid_source.radiopaedia"] == 1.0
    assert values["images.source.armiro.covid_source.not_covid_source"] == 1.0
    assert values["images.source.nih.covid_source.not_covid_source"] == 1.0
    assert "images.source.nih.covid_source.sirm" not in values
    # The label counts per source are unchanged beside them.
    assert values["images.source.armiro.covid"] == 3.0
    assert values["bytes_transferred"] == 42.0


def test_unavailable_source_stops_the_run_with_its_name(
    shared_data, mirror_url, tmp_path, monkeypatch
):
    sources = source_params(mirror_url, monkeypatch)
    sources["figure1_covid"]["base_url"] = f"{mirror_url}/not_there/"
    with pytest.raises(SourceFailedError, match=r"figure1_covid \(http.*/not_there/\).*HTTP 404"):
        run_ingest({"sources": sources}, download_params(tmp_path))


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 6), color=90).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def faulty_upstream():
    """An Actualmed-style source with one good, one missing (404) and one undecodable image."""
    plan = FaultPlan()
    plan.files["/act/"] = b'<a href="metadata.csv">m</a> <a href="images/">i</a>'
    plan.files["/act/metadata.csv"] = b"imagename,finding\na.png,COVID-19\nb.png,\nc.png,\n"
    plan.files["/act/images/"] = (
        b'<a href="a.png">a</a> <a href="b.png">b</a> <a href="c.png">c</a>'
    )
    plan.files["/act/images/a.png"] = tiny_png()
    plan.status["/act/images/b.png"] = 404
    plan.files["/act/images/c.png"] = b"not a png at all"
    with FaultServer(plan) as server:
        yield server


def faulty_sources(server) -> dict:
    actualmed = {
        "enabled": True,
        "base_url": f"{server.url}/act/",
        "listing": "http_index",
        "metadata_path": "metadata.csv",
        "images_dir": "images/",
        "filename_column": "imagename",
        "covid_source": "unknown",
    }
    # Same adapter, but its metadata.csv is absent upstream: the whole source fails.
    figure1 = actualmed | {"base_url": f"{server.url}/gone/", "covid_source": "figure1"}
    return {"actualmed_covid": actualmed, "figure1_covid": figure1}


def test_file_failures_are_reported_and_the_run_goes_on(faulty_upstream, tmp_path):
    sources = faulty_sources(faulty_upstream)
    del sources["figure1_covid"]
    outputs = run_ingest({"sources": sources}, download_params(tmp_path))
    assert outputs["raw_index"]["upstream_path"].tolist() == ["images/a.png"]
    report = outputs["ingest_report"].set_index("image_id")
    base = f"{faulty_upstream.url}/act/images/"
    assert report["url"].to_dict() == {"actualmed_covid:images/b.png": base + "b.png"} | {
        "actualmed_covid:images/c.png": base + "c.png"
    }
    assert set(report["source_id"]) == {"actualmed_covid"}
    assert "HTTP 404" in report.loc["actualmed_covid:images/b.png", "reason"]
    assert "image" in report.loc["actualmed_covid:images/c.png", "reason"]
    pd.testing.assert_frame_equal(outputs["ingest_report_csv"], outputs["ingest_report"])


def test_failed_source_stops_the_run_after_the_report_is_saved(faulty_upstream, tmp_path):
    catalog = ingest_catalog(
        {"sources": faulty_sources(faulty_upstream)}, download_params(tmp_path)
    )
    with pytest.raises(SourceFailedError) as raised:
        SequentialRunner().run(create_pipeline(), catalog)
    message = str(raised.value)
    assert f"source figure1_covid ({faulty_upstream.url}/gone/)" in message
    assert "metadata.csv: HTTP 404" in message
    assert "download.fail_on_source_error=false" in message
    report = catalog["ingest_report"].load()
    assert report.set_index("stage").loc["source", "source_id"] == "figure1_covid"
    assert sorted(report.loc[report["stage"] != "source", "image_id"]) == [
        "actualmed_covid:images/b.png",
        "actualmed_covid:images/c.png",
    ]
    pd.testing.assert_frame_equal(catalog["ingest_report_csv"].load(), report)
    # No partial index of the sources that did work is written by a failed run.
    with pytest.raises(DatasetError):
        catalog["raw_index"].load()


def tiny_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def test_a_failed_archive_is_reported_and_the_other_archive_ingested(tmp_path):
    plan = FaultPlan()
    plan.files["/kermany/part1.zip"] = tiny_zip(
        {"chest_xray/train/NORMAL/IM-0001-0001.png": tiny_png()}
    )
    plan.status["/kermany/part2.zip"] = 404
    with FaultServer(plan) as server:
        kermany = {
            "enabled": True,
            "base_url": f"{server.url}/kermany/",
            "archive": ["part1.zip", "part2.zip"],
        }
        outputs = run_ingest({"sources": {"kermany": kermany}}, download_params(tmp_path))
    assert outputs["raw_index"]["upstream_path"].tolist() == [
        "chest_xray/train/NORMAL/IM-0001-0001.png"
    ]
    report = outputs["ingest_report"]
    assert report[["source_id", "image_id", "url", "stage"]].values.tolist() == [
        ["kermany", "", f"{server.url}/kermany/part2.zip", "archive"]
    ]
    assert "HTTP 404" in report.loc[0, "reason"]


def test_every_failed_source_is_named(faulty_upstream, tmp_path):
    sources = faulty_sources(faulty_upstream)
    sources["actualmed_covid"]["base_url"] = f"{faulty_upstream.url}/also_gone/"
    with pytest.raises(SourceFailedError, match=r"2 source\(s\)") as raised:
        run_ingest({"sources": sources}, download_params(tmp_path))
    assert "actualmed_covid" in str(raised.value) and "figure1_covid" in str(raised.value)


def test_unavailable_source_is_reported_when_allowed(
    shared_data, mirror_url, tmp_path, monkeypatch
):
    sources = source_params(mirror_url, monkeypatch)
    sources["figure1_covid"]["base_url"] = f"{mirror_url}/not_there/"
    outputs = run_ingest(
        {"sources": sources}, download_params(tmp_path, fail_on_source_error=False)
    )
    report = outputs["ingest_report"]
    assert list(report["stage"]) == ["source"]
    assert report.iloc[0]["source_id"] == "figure1_covid"
    assert "HTTP 404" in report.iloc[0]["reason"]
    assert set(outputs["raw_index"]["source_id"]) == {"shenzhen_montgomery_seg"}


def test_no_enabled_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no source is enabled"):
        run_ingest({"sources": {"figure1_covid": {"enabled": False}}}, download_params(tmp_path))


def test_image_store_dataset_versions_its_manifest_and_checks_files(tmp_path):
    from kedro.io import DatasetError
    from kedro.io.core import Version

    from covid_cxnet_pipeline.datasets import ImageStoreDataset

    stored = tmp_path / "store" / "ab" / ("ab" + "0" * 62 + ".png")
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"png")
    manifest = pd.DataFrame({"sha256": ["ab" + "0" * 62], "path": [str(stored)], "kind": ["image"]})
    dataset = ImageStoreDataset(
        root=str(tmp_path / "store"),
        filepath=str(tmp_path / "manifest.parquet"),
        version=Version(None, None),
    )
    dataset.save(manifest)
    assert dataset.exists()
    pd.testing.assert_frame_equal(dataset.load(), manifest)
    assert len(list((tmp_path / "manifest.parquet").iterdir())) == 1  # one version folder

    outside = manifest.assign(path=str(tmp_path / "elsewhere.png"))
    with pytest.raises(DatasetError, match="download.store_root"):
        ImageStoreDataset(root=str(tmp_path / "store"), filepath=str(tmp_path / "m2.parquet")).save(
            outside
        )
    stored.unlink()
    with pytest.raises(DatasetError, match="missing"):
        ImageStoreDataset(root=str(tmp_path / "store"), filepath=str(tmp_path / "m3.parquet")).save(
            manifest
        )


def test_duplicated_image_ids_name_their_sources():
    from covid_cxnet_pipeline.pipelines.ingest.nodes import _check_unique

    candidates = pd.DataFrame(
        {
            "image_id": ["kermany:a.png", "kermany:a.png", "nih_cxr14:b.png", "x:c.png"],
            "source_id": ["kermany", "nih_cxr14", "nih_cxr14", "x"],
        }
    )
    with pytest.raises(ValueError, match=r"kermany:a\.png \(from kermany, nih_cxr14\)"):
        _check_unique(candidates)
    _check_unique(candidates.iloc[1:])  # no duplicate: no error
