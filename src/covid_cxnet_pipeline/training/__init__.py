"""Training library for the classifier pipelines: seeding, tf.data input, augmentation, fit, MLflow.

Submodules are imported explicitly (``from covid_cxnet_pipeline.training.dataset import
make_dataset``) so that importing the package does not pull in TensorFlow.
"""
