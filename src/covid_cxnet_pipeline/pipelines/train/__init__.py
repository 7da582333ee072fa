"""The modular classifier training pipeline, instanced as ``train_binary`` and ``train_multiclass``."""

from covid_cxnet_pipeline.pipelines.train.pipeline import create_pipeline

__all__ = ["create_pipeline"]
