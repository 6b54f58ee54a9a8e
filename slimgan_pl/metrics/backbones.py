"""The feature network behind FID / IS / KID / mIC, chosen per dataset (overridable).

* ``inception``: Inception-v3 (torch-fidelity's port of the TF FID network, :mod:`.inception`) for
  every RGB dataset. Metrics are named FID, IS, KID, mIC (keys ``fid``, ``is``, ``kid``).
* ``fmnist_classifier``: the project's Fashion-MNIST classifier (:mod:`.fmnist_classifier`, the
  file shipped with the package) for Fashion-MNIST. Metrics are named FMNIST-FID, FMNIST-IS,
  FMNIST-KID, FMNIST-mIC (keys ``fmnist_fid`` ...): a different network, so never comparable with
  (nor labelled as) Inception numbers.

Both expose ``features_and_logits(images)`` on float [-1, 1] or uint8 images; one pass gives the
features of FID/KID/mIC and the logits of IS.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimgan_pl.choices import BACKBONES  # defined without torch, for the tools' --help

NOTES = {
    "inception": "FID/IS/KID/mIC use Inception-v3 (torch-fidelity's TF-compatible port: pool3 features, "
    "unbiased logits, images resized to 299 without antialiasing).",
    "fmnist_classifier": "FMNIST-FID/IS/KID/mIC use the project's Fashion-MNIST classifier (penultimate features, "
    "logits) instead of Inception-v3; they are not comparable with Inception FID/IS/KID.",
}


@dataclass
class FeatureSet:
    features: torch.Tensor  # (N, D): pool3 (Inception) or penultimate (classifier) features
    logits: torch.Tensor  # (N, K): class logits, for IS


@dataclass
class Backbone:
    """A loaded feature network plus what the reports need to name its numbers."""

    kind: str  # one of BACKBONES
    net: nn.Module  # has features_and_logits(images) -> (features, logits)
    description: dict[str, Any]  # the ``extractor`` entry of metrics.json (path, sha256, ...)
    batch_size: int  # images per forward pass (Inception at 299px is memory-hungry)

    @property
    def key_prefix(self) -> str:
        """Prefix of the metric keys in metrics.json and of the logged names: ``fmnist_`` or none."""
        return "fmnist_" if self.kind == "fmnist_classifier" else ""

    @property
    def label_prefix(self) -> str:
        """Prefix of the human-readable names: ``FMNIST-FID`` vs ``FID``."""
        return "FMNIST-" if self.kind == "fmnist_classifier" else ""

    @property
    def sha256(self) -> str:
        return self.description["sha256"]

    @property
    def name(self) -> str:
        return self.description["name"]

    @property
    def num_features(self) -> int:
        return int(self.net.num_features)

    @property
    def note(self) -> str:
        return NOTES[self.kind]

    def to(self, device: torch.device | str) -> Backbone:
        self.net.to(device)
        return self

    @torch.no_grad()
    def extract(
        self, images: torch.Tensor, batch_size: int | None = None, progress: Callable[[int], Any] | None = None
    ) -> FeatureSet:
        """Features and logits of ``images`` (float64 on the CPU, in batches); ``progress(n)`` after each batch
        of ``n`` images (e.g. a tqdm bar's ``update``)."""
        step = min(batch_size or self.batch_size, self.batch_size)
        parts = []
        for x in images.split(step):
            parts.append(self.net.features_and_logits(x))
            if progress is not None:
                progress(len(x))
        return FeatureSet(
            torch.cat([f.double().cpu() for f, _ in parts]), torch.cat([lg.double().cpu() for _, lg in parts])
        )


def default_backbone(dataset: str) -> str:
    """Fashion-MNIST: the project's classifier; every other (RGB) dataset: Inception-v3."""
    return "fmnist_classifier" if dataset == "fashion_mnist" else "inception"


def load_backbone(
    kind: str,
    image_shape: tuple[int, int, int],
    classifier_path: str | os.PathLike | None = None,
    inception_weights: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = print,
) -> Backbone:
    """Load backbone ``kind`` for generated images of ``image_shape`` (C, H, W); one-line errors
    (ValueError, InceptionWeightsError, ClassifierCacheError) naming what to change."""
    if kind not in BACKBONES:
        raise ValueError(f"backbone must be one of {list(BACKBONES)} (or auto), got {kind!r}")
    if kind == "inception":
        from slimgan_pl.metrics.inception import InceptionV3

        net = InceptionV3(inception_weights)
        if not net.official_weights and log:
            log(
                f"warning: {net.weights_path} is not the official Inception file (sha256 {net.sha256[:12]}): "
                "these numbers are not FID/IS/KID"
            )
        return Backbone(kind, net, net.describe(), batch_size=64)
    from slimgan_pl.metrics.fmnist_classifier import IMAGE_SIZE, FMNISTFeatureExtractor, load_classifier

    if tuple(image_shape) != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"backbone fmnist_classifier needs 1x{IMAGE_SIZE}x{IMAGE_SIZE} images, this generator "
            f"makes {'x'.join(map(str, image_shape))}; use backbone inception"
        )
    loaded = load_classifier(classifier_path)
    if not loaded.shipped and log:
        log(
            f"warning: FMNIST classifier {loaded.path} is not the shipped one (weights sha256 {loaded.sha256[:12]}): "
            "FMNIST-FID numbers are comparable only with numbers from the same file"
        )
    net = FMNISTFeatureExtractor(loaded.model, "features", sha256=loaded.sha256)
    return Backbone(kind, net, loaded.describe(), batch_size=500)
