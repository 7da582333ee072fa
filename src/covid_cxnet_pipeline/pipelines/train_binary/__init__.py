"""The ``train_binary`` instance of the modular training pipeline (pipelines/train)."""

from covid_cxnet_pipeline.pipelines.train_binary.pipeline import create_pipeline

__all__ = ["create_pipeline"]
