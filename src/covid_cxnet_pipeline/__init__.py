"""covid-cxnet-pipeline: a reproducible Kedro implementation of COVID-CXNet."""

__version__ = "0.1.0"
