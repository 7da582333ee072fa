"""The ``predict`` pipeline: a trained classifier on new images or DICOM files."""

from covid_cxnet_pipeline.pipelines.predict.pipeline import create_pipeline

__all__ = ["create_pipeline"]
