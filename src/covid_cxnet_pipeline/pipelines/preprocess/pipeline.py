"""Wiring of the ``preprocess`` pipeline."""

from kedro.pipeline import Node, Pipeline

from covid_cxnet_pipeline.pipelines.preprocess import nodes


def create_pipeline(**kwargs) -> Pipeline:
    """Build the preprocess pipeline: masks, ROI, reference histogram, model inputs, reports.

    Returns:
        The pipeline, reading ``curated_index`` and ``unet_model`` and writing
        ``model_input_index``, ``histogram_reference`` and the reports.
    """
    return Pipeline(
        [
            Node(
                nodes.predict_lung_masks,
                ["curated_index", "unet_model", "params:preprocess"],
                "preprocess_lung_masks",
                name="preprocess_predict_lung_masks",
            ),
            Node(
                nodes.crop_lung_roi,
                ["preprocess_lung_masks", "params:preprocess"],
                "preprocess_lung_roi",
                name="preprocess_crop_lung_roi",
            ),
            Node(
                nodes.build_histogram_reference,
                ["preprocess_lung_roi", "params:preprocess"],
                "histogram_reference",
                name="preprocess_build_histogram_reference",
            ),
            Node(
                nodes.write_model_inputs,
                ["preprocess_lung_roi", "histogram_reference", "params:preprocess"],
                ["model_input_index", "preprocess_model_input_stats"],
                name="preprocess_write_model_inputs",
            ),
            Node(
                nodes.preprocess_metrics,
                ["preprocess_lung_roi", "preprocess_model_input_stats"],
                "preprocess_metrics",
                name="preprocess_metrics",
            ),
            Node(
                nodes.record_lineage,
                ["model_input_index", "histogram_reference"],
                "preprocess_lineage",
                name="preprocess_record_lineage",
            ),
            Node(
                nodes.roi_fallback_report,
                "preprocess_lung_roi",
                "preprocess_roi_fallbacks",
                name="preprocess_roi_fallback_report",
            ),
            Node(
                nodes.contact_sheet,
                ["model_input_index", "params:preprocess"],
                "preprocess_contact_sheet",
                name="preprocess_contact_sheet",
            ),
        ]
    )
