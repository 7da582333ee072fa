"""Model builders: the paper's base CNN, DenseNet-121 / CheXNet, COVID-CXNet, U-Net, Grad-CAM.

Import the submodules directly (``from covid_cxnet_pipeline.models.covid_cxnet import
build_classifier``); this package stays free of TensorFlow imports so importing it is cheap.
"""
