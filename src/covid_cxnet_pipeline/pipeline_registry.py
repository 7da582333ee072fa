"""Project pipelines: every package under ``pipelines/`` is discovered automatically."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from covid_cxnet_pipeline.pipelines.train.pipeline import create_training_instance

# Namespaced instances of the one modular training pipeline (pipelines/train).
TRAINING_INSTANCES = ("train_binary", "train_multiclass")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects. ``__default__`` runs the data
        preparation chain (ingest, curate, segmentation, preprocess); training is run by name.
    """
    pipelines = find_pipelines(raise_errors=True)
    # pipelines/train is a template with un-namespaced names; only its instances are runnable.
    pipelines.pop("train", None)
    for name in TRAINING_INSTANCES:
        pipelines[name] = create_training_instance(name)
    default_chain = ["ingest", "curate", "train_segmentation", "preprocess"]
    pipelines["__default__"] = sum(
        (pipelines[name] for name in default_chain if name in pipelines), Pipeline([])
    )
    return pipelines
