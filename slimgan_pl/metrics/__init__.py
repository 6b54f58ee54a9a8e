"""Evaluation metrics.

* :mod:`.fmnist_classifier`: the project's Fashion-MNIST classifier and its torchmetrics /
  torch-fidelity feature modules, for FMNIST-FID / FMNIST-IS / FMNIST-KID (not Inception numbers).
* :mod:`.scores`: FID, KID and IS of precomputed features, computed by torchmetrics.
* :mod:`.inception`: Inception-v3 from a local weights file, for FID/IS/KID proper.
* :mod:`.consistency`: mIC, the cross-width consistency of a slimmable generator.
* :mod:`.cost`: per-width parameters, MACs and CPU latency.

Submodules are not imported here, so ``python -m slimgan_pl.metrics.fmnist_classifier`` runs cleanly.
"""
