"""The ``train_segmentation`` pipeline: image + lung-mask pairs -> trained U-Net and its scores."""

from covid_cxnet_pipeline.pipelines.train_segmentation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
