"""``train_binary``: the training template of pipelines/train under the namespace ``train_binary``.

A package of its own so that Kedro's pipeline discovery (which, with ``--pipeline``, imports
only the requested package) finds the instance; parameters: ``train_binary.training``.
"""

from kedro.pipeline import Pipeline

from covid_cxnet_pipeline.pipelines.train.pipeline import create_training_instance


def create_pipeline(**kwargs) -> Pipeline:
    """The binary classifier: train, card, MLflow logging, evaluation, repeats over seeds.

    Returns:
        The training template namespaced ``train_binary``.
    """
    return create_training_instance("train_binary")
