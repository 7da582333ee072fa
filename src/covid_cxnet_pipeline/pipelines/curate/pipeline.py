"""Wiring of the ``curate`` pipeline."""

from kedro.pipeline import Node, Pipeline

from covid_cxnet_pipeline.pipelines.curate import nodes


def create_pipeline(**kwargs) -> Pipeline:
    """Build the curate pipeline: harmonise, features, de-dup, filter, split, report.

    Returns:
        The pipeline, reading ``raw_index`` and writing ``curated_index``, its reports and its
        lineage (digests of the tables read and written).
    """
    return Pipeline(
        [
            Node(
                nodes.harmonise,
                ["raw_index", "params:curate"],
                "curate_harmonised_index",
                name="curate_harmonise",
            ),
            Node(
                nodes.image_features,
                ["curate_harmonised_index", "params:curate"],
                "curate_image_features",
                name="curate_image_features",
            ),
            Node(
                nodes.duplicate_pairs,
                ["curate_image_features", "params:curate"],
                "curate_duplicate_pairs",
                name="curate_duplicate_pairs",
            ),
            Node(
                nodes.group_images,
                [
                    "curate_harmonised_index",
                    "curate_image_features",
                    "curate_duplicate_pairs",
                    "params:curate",
                ],
                ["curate_grouped_index", "curation_duplicate_groups"],
                name="curate_group_images",
            ),
            Node(
                nodes.filter_images,
                ["curate_grouped_index", "params:curate"],
                ["curate_kept_index", "curation_exclusions"],
                name="curate_filter_images",
            ),
            Node(
                nodes.split_and_validate,
                ["curate_kept_index", "params:curate"],
                "curated_index",
                name="curate_split_and_validate",
            ),
            Node(
                nodes.summarise,
                ["curated_index", "curation_exclusions"],
                [
                    "curation_split_summary",
                    "curation_split_plot",
                    "curation_metrics",
                    "curation_split_plot_versioned",
                ],
                name="curate_summarise",
            ),
            Node(
                nodes.report_copies,
                ["curation_exclusions", "curation_duplicate_groups"],
                ["curation_exclusions_csv", "curation_duplicate_groups_csv"],
                name="curate_report_copies",
            ),
            Node(
                nodes.record_lineage,
                ["raw_index", "curated_index"],
                ["curated_index_artifact", "curation_lineage"],
                name="curate_record_lineage",
            ),
        ]
    )
