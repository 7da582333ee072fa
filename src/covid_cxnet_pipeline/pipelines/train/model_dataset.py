"""The catalog dataset of a trained classifier: a Keras model whose absence is explained."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from kedro.io.core import VersionNotFoundError
from kedro_datasets.tensorflow import TensorFlowModelDataset


class TrainedModelDataset(TensorFlowModelDataset):
    """``tensorflow.TensorFlowModelDataset`` that says what to run when no model is saved yet.

    The ``evaluate`` pipeline evaluates every training instance; without a saved
    ``<instance>/model.keras`` Kedro's own error only says no version was found.
    """

    def load(self) -> Any:
        """Load the latest (or the requested) version of the model.

        Returns:
            The Keras model.

        Raises:
            VersionNotFoundError: no saved model, naming the training pipeline to run and how to
                evaluate only the other instances.
        """
        try:
            return super().load()
        except VersionNotFoundError as error:
            namespace = PurePosixPath(str(self._filepath)).parent.name
            raise VersionNotFoundError(
                f"No saved model for {namespace} at {self._filepath}: train it first "
                f"(`kedro run --env=<env> --pipeline={namespace}`), or evaluate only the models "
                "you have, e.g. `kedro run --pipeline=evaluate --namespaces train_binary`. "
                f"({error})"
            ) from error
