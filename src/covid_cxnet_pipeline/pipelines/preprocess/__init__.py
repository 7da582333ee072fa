"""The ``preprocess`` pipeline: curated index -> lung masks, ROI crops, model-ready 3-channel PNGs."""

from covid_cxnet_pipeline.pipelines.preprocess.pipeline import create_pipeline

__all__ = ["create_pipeline"]
