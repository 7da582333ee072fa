"""``train_multiclass``: the training template of pipelines/train under the namespace ``train_multiclass``.

A package of its own so that Kedro's pipeline discovery (which, with ``--pipeline``, imports
only the requested package) finds the instance; parameters: ``train_multiclass.training``.
"""

from kedro.pipeline import Pipeline

from covid_cxnet_pipeline.pipelines.train.pipeline import create_training_instance


def create_pipeline(**kwargs) -> Pipeline:
    """The multiclass classifier: train, card, MLflow logging, evaluation, repeats over seeds.

    Returns:
        The training template namespaced ``train_multiclass``.
    """
    return create_training_instance("train_multiclass")
