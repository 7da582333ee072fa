"""The curate pipeline on an in-memory catalog: happy path and a failing validation."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure
from PIL import Image

from covid_cxnet_pipeline.curation.lineage import table_digest
from covid_cxnet_pipeline.curation.validation import CurationValidationError
from covid_cxnet_pipeline.pipelines.curate import create_pipeline
from covid_cxnet_pipeline.schema import CURATED_EXTRA_COLUMNS, RAW_INDEX_COLUMNS
from tests.conftest import PROJECT_ROOT
from tests.curation.builders import raw_row, save_image, synthetic_picture

LABELS = ("normal", "cap", "covid")
OUTPUTS = (
    "curated_index",
    "curation_exclusions",
    "curation_duplicate_groups",
    "curation_split_summary",
    "curation_split_plot",
    "curation_split_plot_versioned",
    "curation_metrics",
    "curation_exclusions_csv",
    "curation_duplicate_groups_csv",
    "curated_index_artifact",
    "curation_lineage",
)


@pytest.fixture
def params(tmp_path) -> dict:
    text = (PROJECT_ROOT / "conf/base/parameters_curate.yml").read_text()
    curate = copy.deepcopy(yaml.safe_load(text)["curate"])
    curate["features"].update(cache_path=str(tmp_path / "cache.parquet"), workers=1)
    curate["filters"]["quality"].update(min_width=64, min_height=64)
    curate["split"]["external_sources"] = ["hospital_x"]
    return curate


@pytest.fixture
def raw_index(tmp_path) -> pd.DataFrame:
    rows = []
    for number in range(24):
        stored = save_image(synthetic_picture(number), tmp_path / f"{number}.png")
        source = "hospital_x" if number >= 20 else "src_a"
        rows.append(raw_row(f"{source}:{number}.png", stored, label=LABELS[number % 3]))
    copy_of_first = synthetic_picture(0).resize((120, 144))
    stored = save_image(copy_of_first, tmp_path / "copy.jpg", quality=80)
    rows.append(raw_row("src_b:copy.jpg", stored, label="covid", age=9.0))
    return pd.DataFrame(rows)


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test can read intermediate outputs."""

    def _release(self) -> None:
        pass


def run(raw_index: pd.DataFrame, params: dict, datasets: dict | None = None) -> DataCatalog:
    catalog = DataCatalog(
        {
            "raw_index": MemoryDataset(raw_index),
            "params:curate": MemoryDataset(params),
            **{name: KeptDataset() for name in OUTPUTS},
            **(datasets or {}),
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


def test_curate_pipeline_produces_curated_index_and_reports(raw_index, params):
    catalog = run(raw_index, params)
    curated = catalog["curated_index"].load()
    exclusions = catalog["curation_exclusions"].load()
    assert list(curated.columns) == list(RAW_INDEX_COLUMNS) + list(CURATED_EXTRA_COLUMNS)
    # The pediatric copy of 0.png takes its original with it: both excluded, with reasons.
    assert exclusions.set_index("image_id")["reason"].to_dict() == {
        "src_a:0.png": "pediatric_age",
        "src_b:copy.jpg": "pediatric_age",
    }
    assert len(curated) == len(raw_index) - 2
    assert set(curated.loc[curated["source_id"] == "hospital_x", "split"]) == {"external"}
    summary = catalog["curation_split_summary"].load()
    assert summary["count"].sum() == len(curated)
    plot = catalog["curation_split_plot"].load()
    assert isinstance(plot, Figure)
    assert list(catalog["curation_split_plot_versioned"].load()) == ["curation_split_summary.png"]
    metrics = catalog["curation_metrics"].load()
    assert metrics["kept"] == {"value": float(len(curated)), "step": 0}
    assert metrics["excluded.pediatric_age"]["value"] == 2.0
    groups = catalog["curation_duplicate_groups"].load()
    assert groups["member_image_ids"].tolist() == ["src_a:0.png;src_b:copy.jpg"]
    pd.testing.assert_frame_equal(catalog["curation_exclusions_csv"].load(), exclusions)
    pd.testing.assert_frame_equal(catalog["curation_duplicate_groups_csv"].load(), groups)
    pd.testing.assert_frame_equal(catalog["curated_index_artifact"].load(), curated)
    assert catalog["curation_lineage"].load() == {
        "raw_index_sha256": table_digest(raw_index),
        "raw_index_rows": len(raw_index),
        "curated_index_sha256": table_digest(curated),
        "curated_index_rows": len(curated),
    }


def test_split_plot_is_saved_as_artefact_and_as_a_versioned_copy(raw_index, params, tmp_path):
    # The two plot datasets as configured (the MLflow wrapper replaced by its inner dataset, so
    # no MLflow run is needed), with their paths under tmp_path.
    config = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog_curate.yml").read_text())
    entries = {}
    for name in ("curation_split_plot", "curation_split_plot_versioned"):
        entry = config[name].get("dataset", config[name])
        entries[name] = {**entry, "filepath": str(tmp_path / entry["filepath"])}
    assert "versioned" not in entries["curation_split_plot"]
    version = "2026-11-29T21.00.00.000Z"
    on_disk = DataCatalog.from_config(entries, save_version=version)
    run(raw_index, params, {name: on_disk[name] for name in entries})
    reporting = tmp_path / "data/08_reporting"
    assert (reporting / "curation_split_summary.png").stat().st_size > 0
    versioned = reporting / "curate_figures_versioned" / version / "curate_figures_versioned"
    assert [p.name for p in versioned.iterdir()] == ["curation_split_summary.png"]
    # Both files hold the same picture (a second savefig re-runs the layout: a pixel may move).
    copy = Image.open(versioned / "curation_split_summary.png")
    artefact = Image.open(reporting / "curation_split_summary.png")
    assert abs(copy.width - artefact.width) <= 2 and abs(copy.height - artefact.height) <= 2


def test_curate_pipeline_rejects_a_view_map_outside_the_vocabulary(raw_index, params):
    params["views"]["map"] = {"PA": "frontal"}
    with pytest.raises(ValueError, match="curate.views.map"):
        run(raw_index, params)


def test_curate_pipeline_names_leaking_groups(raw_index, params, monkeypatch):
    # Break the split so that one patient group straddles two splits: validation must say so.
    from covid_cxnet_pipeline.pipelines.curate import nodes

    def leaky_split(frame, ratios, seed, external_sources=()):
        split = pd.Series("train", index=frame.index, dtype=object)
        split[frame.index[frame["patient_group"] == "src_a:same"][0]] = "test"
        return split

    raw_index.loc[raw_index.index[1:3], "patient_id"] = "same"
    monkeypatch.setattr(nodes, "assign_splits", leaky_split)
    with pytest.raises(CurationValidationError, match="patient_group value.*'src_a:same'"):
        run(raw_index, params)
