"""Wiring of the ``ingest`` pipeline."""

from kedro.pipeline import Node, Pipeline

from covid_cxnet_pipeline.pipelines.ingest import nodes


def create_pipeline(**kwargs) -> Pipeline:
    """List sources, store their images and masks, and write the raw indexes and the report.

    Returns:
        The ``ingest`` pipeline.
    """
    return Pipeline(
        [
            Node(
                nodes.list_candidates,
                inputs=["params:ingest", "params:download"],
                outputs=[
                    "ingest_image_candidates",
                    "ingest_mask_candidates",
                    "ingest_sources",
                    "ingest_listing_failures",
                ],
                name="list_candidates",
            ),
            Node(
                nodes.store_images,
                inputs=["ingest_image_candidates", "params:download"],
                outputs="ingest_stored_images",
                name="store_images",
            ),
            Node(
                nodes.store_masks,
                inputs=["ingest_mask_candidates", "params:download"],
                outputs="ingest_stored_masks",
                name="store_masks",
            ),
            Node(
                nodes.build_ingest_report,
                inputs=[
                    "ingest_sources",
                    "ingest_stored_images",
                    "ingest_stored_masks",
                    "ingest_listing_failures",
                ],
                outputs=["ingest_report", "ingest_report_csv"],
                name="build_ingest_report",
            ),
            # Reads the saved report, so a failed source stops the run only after the report
            # is written and logged; the indexes wait for it, so no partial index is saved.
            Node(
                nodes.check_sources,
                inputs=[
                    "ingest_report",
                    "ingest_report_csv",
                    "ingest_sources",
                    "params:download",
                ],
                outputs="ingest_sources_checked",
                name="check_sources",
            ),
            Node(
                nodes.build_raw_index,
                inputs=["ingest_stored_images", "ingest_sources_checked"],
                outputs="raw_index",
                name="build_raw_index",
            ),
            Node(
                nodes.build_raw_mask_index,
                inputs=["ingest_stored_masks", "raw_index"],
                outputs="raw_mask_index",
                name="build_raw_mask_index",
            ),
            Node(
                nodes.ingest_metrics,
                inputs={
                    "raw_index": "raw_index",
                    "raw_mask_index": "raw_mask_index",
                    "ingest_report": "ingest_report",
                    "source_summary": "ingest_sources_checked",
                    "stored_images": "ingest_stored_images",
                    "stored_masks": "ingest_stored_masks",
                },
                outputs="ingest_metrics",
                name="ingest_metrics",
            ),
            Node(
                nodes.image_store_manifest,
                inputs=["raw_index", "raw_mask_index"],
                outputs="image_store",
                name="image_store_manifest",
            ),
        ]
    )
