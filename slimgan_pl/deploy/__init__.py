"""Deploying a trained SlimGAN at any width.

* :mod:`.sample`: ``slimgan-sample``, images at one width (grid, PNG folder, ``.npz``); library
  :mod:`.images`.
* :mod:`.export`: ``slimgan-export``, the generator cut at one width into a dense model
  (state dict, TorchScript, ONNX); Python API :func:`~.export.export_model`, :func:`~.export.load_dense`
  (library :mod:`.dense`, every name also importable from :mod:`.export`).
* :mod:`.pick`: ``slimgan-pick``, the width to deploy within a latency or MACs budget.

Checkpoints are opened by :func:`slimgan_pl.checkpoint.load_slimgan`. Submodules are not imported
here, so ``python -m slimgan_pl.deploy.export`` runs cleanly.
"""
