"""Wiring of the evaluation stage: one template, reused inside each training instance.

``create_evaluation_template`` is the un-namespaced stage; the training pipeline includes it, and
``create_pipeline`` (the ``evaluate`` pipeline) instances it under each training namespace so it
re-evaluates the latest saved ``<namespace>.model`` from the catalog with the same nodes.
"""

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline, pipeline

from covid_cxnet_pipeline.pipelines.evaluate import nodes

# The training instances whose saved models ``kedro run --pipeline=evaluate`` evaluates.
TRAINING_INSTANCES = ("train_binary", "train_multiclass")
# Inputs shared by every instance (not prefixed with the namespace).
SHARED_INPUTS = {"model_input_index"}
SHARED_PARAMETERS = {"params:evaluate"}


def create_evaluation_template() -> Pipeline:
    """The evaluation nodes with plain dataset names (``model``, ``model_card``...).

    Returns:
        The template; it reads ``model``, ``model_card``, ``training_history``,
        ``model_input_index`` and ``params:evaluate``.
    """
    return Pipeline(
        [
            Node(
                nodes.predict_splits,
                ["model", "model_input_index", "model_card", "params:evaluate"],
                "predictions",
                name="predict_splits",
            ),
            Node(
                nodes.evaluation_metrics,
                ["predictions", "model_card", "params:evaluate"],
                ["evaluation_metrics", "confusion_matrices", "operating_point", "metrics_mlflow"],
                name="evaluation_metrics",
            ),
            Node(
                nodes.operating_threshold,
                ["operating_point", "model_card", "params:evaluate"],
                "operating_threshold",
                name="operating_threshold",
            ),
            Node(
                nodes.evaluation_plots,
                [
                    "predictions",
                    "training_history",
                    "model_card",
                    "params:evaluate",
                    "operating_point",
                ],
                [
                    "confusion_plot",
                    "roc_plot",
                    "calibration_plot",
                    "learning_curves_plot",
                    "evaluation_plots_versioned",
                ],
                name="evaluation_plots",
            ),
            Node(
                nodes.gradcam_and_localisation,
                ["model", "predictions", "model_card", "params:evaluate"],
                [
                    "gradcam_grid",
                    "localisation_scores",
                    "localisation_by_class",
                    "localisation_mlflow",
                    "gradcam_grid_versioned",
                ],
                name="gradcam_and_localisation",
            ),
            Node(
                nodes.lime_explanations,
                ["model", "predictions", "model_card", "params:evaluate"],
                ["lime_grid", "lime_grid_versioned"],
                name="lime_explanations",
            ),
            Node(
                nodes.evaluation_report,
                {
                    "metrics": "evaluation_metrics",
                    "operating_point": "operating_point",
                    "confusion": "confusion_matrices",
                    "localisation_by_class": "localisation_by_class",
                    "model_card": "model_card",
                    "params": "params:evaluate",
                },
                "evaluation_report",
                name="evaluation_report",
            ),
        ]
    )


def create_evaluation_instance(namespace: str) -> Pipeline:
    """The evaluation stage of one training instance.

    Args:
        namespace: the training instance, e.g. ``train_binary``.

    Returns:
        The stage with its datasets prefixed by ``namespace`` (model, card, outputs) and the
        shared ``model_input_index`` and ``params:evaluate``.
    """
    return pipeline(
        create_evaluation_template(),
        namespace=namespace,
        inputs=SHARED_INPUTS,
        parameters=SHARED_PARAMETERS,
    )


def create_pipeline(instances: Sequence[str] = TRAINING_INSTANCES, **kwargs) -> Pipeline:
    """The ``evaluate`` pipeline: re-evaluate the latest saved model of every training instance.

    Args:
        instances: training namespaces whose ``<namespace>.model`` is evaluated.
        **kwargs: unused (Kedro's ``find_pipelines`` passes none).

    Returns:
        The evaluation stage instanced once per training namespace.
    """
    return sum((create_evaluation_instance(name) for name in instances), Pipeline([]))
