"""The ``curate`` pipeline: raw index -> curated, de-duplicated, patient-split index."""

from covid_cxnet_pipeline.pipelines.curate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
