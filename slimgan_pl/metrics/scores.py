"""FID / KID / IS from features that were already extracted, computed by torchmetrics.

Evaluation extracts each image set's features once (one classifier pass gives the penultimate
features and the logits) and reuses them for FID, KID, IS and mIC; real-data features come from an
on-disk cache. torchmetrics' metrics run their ``feature=`` module on whatever ``update`` receives,
so a pass-through module with ``num_features`` lets them consume the stored features while the
distances themselves stay torchmetrics' code (no hand-written Frechet distance here).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torchmetrics.image import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance


class PrecomputedFeatures(nn.Module):
    """Identity ``feature=`` module for torchmetrics: ``update`` receives features, not images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"expected features (N, {self.num_features}), got {tuple(features.shape)}")
        return features


@dataclass
class MeanStd:
    mean: float
    std: float


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (N, D) with torchmetrics' FrechetInceptionDistance (float64)."""
    _check_pair(real, fake)
    fid = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]))
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    return float(fid.compute())


def kernel_distance(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> MeanStd:
    """KID (polynomial kernel, mean and std over random subsets) with torchmetrics'
    KernelInceptionDistance. ``subset_size`` is capped at the smaller set; the subsets are drawn
    from a seeded RNG so reruns agree (the global RNG is left untouched)."""
    _check_pair(real, fake)
    size = min(subset_size, len(real), len(fake))
    with _no_buffer_warning():
        kid = KernelInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=size)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return MeanStd(float(mean), float(std))


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 0) -> MeanStd:
    """IS of class logits (N, K) with torchmetrics' InceptionScore (mean and std over ``splits``)."""
    if logits.dim() != 2 or len(logits) < splits:
        raise ValueError(f"need logits (N >= splits={splits}, K), got {tuple(logits.shape)}")
    with _no_buffer_warning():
        score = InceptionScore(feature=PrecomputedFeatures(logits.shape[1]), splits=splits)
    score.update(logits.double())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = score.compute()
    return MeanStd(float(mean), float(std))


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"feature sets must be (N, D) with the same D, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if len(real) < 2 or len(fake) < 2:
        raise ValueError("each feature set needs at least 2 samples")


@contextmanager
def _no_buffer_warning() -> Iterator[None]:
    """torchmetrics warns that KID/IS keep all features in memory; here they are in memory anyway."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*will save all extracted features in buffer", category=UserWarning)
        yield


def frechet_distance_from_stats(mu_real: torch.Tensor, sigma_real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between reference statistics (mu (D,), sigma (D, D), e.g. a ``--ref-stats`` file) and a
    feature set (N, D), with torchmetrics' own Frechet formula (``_compute_fid``, float64) on the
    fake set's mean and unbiased covariance, i.e. what :func:`frechet_distance` computes."""
    from torchmetrics.image.fid import _compute_fid

    if fake.dim() != 2 or len(fake) < 2 or fake.shape[1] != mu_real.shape[0]:
        raise ValueError(f"fake features must be (N >= 2, {mu_real.shape[0]}), got {tuple(fake.shape)}")
    f = fake.double()
    mu_fake = f.mean(dim=0)
    sigma_fake = torch.cov(f.T)  # unbiased, like torchmetrics' FID states and np.cov
    return float(_compute_fid(mu_real.double(), sigma_real.double(), mu_fake, sigma_fake))
