"""The evaluation stage: shared by the training instances and runnable alone as ``evaluate``."""

from covid_cxnet_pipeline.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
