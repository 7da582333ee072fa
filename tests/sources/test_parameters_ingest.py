"""conf/base and conf/mirror parameters_ingest.yml: every mirrored source configured and served."""

from __future__ import annotations

from covid_cxnet_pipeline.sources.base import registered_sources

MIRRORED = (
    "armiro_covidcxnet",
    "gb_ieee8023_bbox",
    "gb_covid_segmentations",
    "figure1_covid",
    "actualmed_covid",
    "darkcovidnet_nih",
    "nih_metadata_txv",
    "shenzhen_montgomery_seg",
)


def test_mirrored_sources_are_the_mirror_folders(shared_data):
    folders = {p.name for p in (shared_data / "mirror").iterdir() if p.is_dir()}
    assert folders == set(MIRRORED)


def test_base_blocks_point_at_pinned_github_commits(base_sources):
    for source_id in MIRRORED:
        block = base_sources[source_id]
        assert block["enabled"] is True
        assert block["base_url"].startswith("https://raw.githubusercontent.com/")
        assert block["base_url"].endswith("/")
        commit = block["base_url"].rstrip("/").rsplit("/", 1)[1]
        assert len(commit) == 40
        assert block["listing"] == "github_tree"
        assert block["listing_url"].endswith(f"/git/trees/{commit}?recursive=1")
        assert block["license"]
    assert set(MIRRORED) <= set(registered_sources())
