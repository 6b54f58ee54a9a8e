"""Evaluation metrics.

* :mod:`.fmnist_classifier`: the project's Fashion-MNIST classifier and its torchmetrics /
  torch-fidelity feature modules, for FMNIST-FID / FMNIST-IS / FMNIST-KID (not Inception numbers).
* :mod:`.scores`: FID, KID and IS of precomputed features, computed by torchmetrics.
* :mod:`.inception`: Inception-v3 from a local weights file, for FID/IS/KID proper.
* :mod:`.backbones`: the feature network per dataset (Inception for RGB, the classifier for
  Fashion-MNIST) and the names its numbers carry.
* :mod:`.reference`: protocol presets, the data config of a checkpoint, real images of a split and
  their cached features / ``mu``-``sigma`` statistics files.
* :mod:`.consistency`: mIC, the cross-width consistency of a slimmable generator.
* :mod:`.cost`: per-width parameters, MACs and CPU latency.
* :mod:`.paired`: paired-by-seed t intervals, permutation test and non-inferiority verdict of comparisons.
* :mod:`.evaluation`: the per-width evaluation of a checkpoint (``slimgan-eval``'s library; its
  command line is :mod:`slimgan_pl.evaluate`) and the end-of-training evaluation.

Submodules are not imported here, so ``python -m slimgan_pl.metrics.fmnist_classifier`` runs cleanly.
"""
