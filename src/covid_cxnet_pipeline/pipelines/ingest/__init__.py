"""The ``ingest`` pipeline: every upstream source into one raw index and a content-addressed store."""

from covid_cxnet_pipeline.pipelines.ingest.pipeline import create_pipeline

__all__ = ["create_pipeline"]
