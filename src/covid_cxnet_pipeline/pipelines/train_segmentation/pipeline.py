"""Wiring of the ``train_segmentation`` pipeline."""

from kedro.pipeline import Node, Pipeline

from covid_cxnet_pipeline.pipelines.train_segmentation import nodes


def create_pipeline(**kwargs) -> Pipeline:
    """Build the U-Net pipeline: pairs, patient split, training, validation scores.

    Returns:
        The pipeline, reading ``raw_index``, ``raw_mask_index``, ``curated_index`` and
        ``curation_duplicate_groups`` and writing ``unet_model``,
        ``segmentation_metrics`` and the plots.
    """
    return Pipeline(
        [
            Node(
                nodes.build_segmentation_pairs,
                [
                    "raw_index",
                    "raw_mask_index",
                    "params:train_segmentation",
                    "params:preprocess.decode",
                    "params:curate.patients.namespaces",
                ],
                "segmentation_pairs_all",
                name="segmentation_build_pairs",
            ),
            Node(
                nodes.drop_classifier_holdout,
                [
                    "segmentation_pairs_all",
                    "curated_index",
                    "curation_duplicate_groups",
                    "params:train_segmentation",
                ],
                "segmentation_pairs_unsplit",
                name="segmentation_drop_classifier_holdout",
            ),
            Node(
                nodes.split_segmentation_pairs,
                ["segmentation_pairs_unsplit", "params:train_segmentation"],
                "segmentation_pairs",
                name="segmentation_split_pairs",
            ),
            Node(
                nodes.train_unet,
                ["segmentation_pairs", "params:train_segmentation"],
                ["unet_model", "segmentation_learning_curves"],
                name="segmentation_train_unet",
            ),
            Node(
                nodes.evaluate_unet,
                [
                    "unet_model",
                    "segmentation_pairs",
                    "params:train_segmentation",
                    "params:preprocess.lung_mask",
                ],
                [
                    "segmentation_metrics",
                    "segmentation_mlflow_metrics",
                    "segmentation_prediction_plot",
                ],
                name="segmentation_evaluate_unet",
            ),
        ]
    )
