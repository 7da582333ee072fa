"""Project pipelines: every package under ``pipelines/`` is discovered automatically."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    ``pipelines/train`` is the modular training template (un-namespaced dataset names); its
    runnable instances are the packages ``train_binary`` and ``train_multiclass``, so the bare
    template is not registered.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects. ``__default__`` runs the data
        preparation chain (ingest, curate, segmentation, preprocess); training is run by name.
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines.pop("train", None)
    default_chain = ["ingest", "curate", "train_segmentation", "preprocess"]
    pipelines["__default__"] = sum(
        (pipelines[name] for name in default_chain if name in pipelines), Pipeline([])
    )
    return pipelines
