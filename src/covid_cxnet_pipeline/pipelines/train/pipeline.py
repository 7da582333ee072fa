"""Wiring of the modular training pipeline: a template, instanced once per task with a namespace.

``create_pipeline`` returns the template (plain dataset names); ``create_training_instance``
prefixes it with a namespace (``train_binary``, ``train_multiclass``) while sharing
``model_input_index`` and the ``train``, ``evaluate`` and ``preprocess`` parameters. The
evaluation stage is the evaluate pipeline's template, included here, not copied.
"""

from kedro.pipeline import Node, Pipeline, pipeline

from covid_cxnet_pipeline.pipelines.evaluate.pipeline import create_evaluation_template
from covid_cxnet_pipeline.pipelines.train import nodes

SHARED_INPUTS = {"model_input_index", "histogram_reference", "unet_model"}
SHARED_PARAMETERS = {"params:train", "params:evaluate", "params:preprocess"}


def create_pipeline(**kwargs) -> Pipeline:
    """The training template: configure, check the replay, train, card, log, evaluate, repeat.

    Returns:
        The un-namespaced template; it reads ``model_input_index``, ``histogram_reference``
        and ``unet_model`` (preprocess outputs, replayed by predict), ``params:train`` (shared
        defaults), ``params:training`` (the instance's overrides), ``params:evaluate`` and
        ``params:preprocess``.
    """
    training = Pipeline(
        [
            Node(
                nodes.resolve_training_config,
                ["params:train", "params:training"],
                "config",
                name="resolve_training_config",
            ),
            # Before training: a replay mismatch must stop the run before a model is saved.
            Node(
                nodes.preprocessing_replay,
                {
                    "preprocess_params": "params:preprocess",
                    "histogram_reference": "histogram_reference",
                    "unet_model": "unet_model",
                },
                "preprocessing_replay",
                name="check_preprocessing_replay",
            ),
            Node(
                nodes.train_classifier,
                ["model_input_index", "config", "preprocessing_replay"],
                ["model", "training_history", "training_info"],
                name="train_classifier",
            ),
            Node(
                nodes.build_model_card,
                {
                    "config": "config",
                    "training_info": "training_info",
                    "model_input_index": "model_input_index",
                    "preprocessing": "preprocessing_replay",
                    "model": "model",
                    "unet_model": "unet_model",
                },
                ["model_card", "unet"],
                name="build_model_card",
            ),
            Node(
                nodes.log_training_run,
                {
                    "model": "model",
                    "model_card": "model_card",
                    "unet_model": "unet",
                    "training_info": "training_info",
                    "model_input_index": "model_input_index",
                    "config": "config",
                },
                "mlflow_model_uri",
                name="log_training_run",
            ),
            Node(
                nodes.train_repeat_seeds,
                ["model_input_index", "config"],
                "repeat_runs",
                name="train_repeat_seeds",
            ),
            Node(
                nodes.summarise_over_seeds,
                ["evaluation_metrics", "repeat_runs", "config"],
                ["seeds_summary", "seeds_mlflow"],
                name="summarise_over_seeds",
            ),
            Node(
                nodes.report_with_seeds,
                ["evaluation_report_without_seeds", "seeds_summary", "config", "params:evaluate"],
                "evaluation_report",
                name="report_with_seeds",
            ),
        ]
    )
    # The evaluation stage's report gains the seeds section before it is saved.
    evaluation = pipeline(
        create_evaluation_template(),
        outputs={"evaluation_report": "evaluation_report_without_seeds"},
    )
    return training + evaluation


def create_training_instance(namespace: str) -> Pipeline:
    """One training instance, e.g. ``train_binary``.

    Args:
        namespace: the instance name; its parameters live under ``<namespace>.training``.

    Returns:
        The template with datasets and ``params:training`` prefixed by ``namespace``.
    """
    return pipeline(
        create_pipeline(),
        namespace=namespace,
        inputs=SHARED_INPUTS,
        parameters=SHARED_PARAMETERS,
    )
