"""Wiring of the ``predict`` pipeline."""

from kedro.pipeline import Node, Pipeline

from covid_cxnet_pipeline.pipelines.predict import nodes


def create_pipeline(**kwargs) -> Pipeline:
    """Build the predict pipeline: one node over a folder of images.

    Returns:
        The pipeline, reading ``params:predict`` and writing ``predictions``.
    """
    return Pipeline(
        [Node(nodes.predict_folder, "params:predict", "predictions", name="predict_folder")]
    )
