"""mIC: how consistent the widths of one slimmable generator are (SlimGAN's consistency metric).

Every width gets the same latent codes; for two widths i, j the inconsistency is the mean over
samples of the squared L2 distance between their features, ``mean_n ||f_i(z_n) - f_j(z_n)||^2``.
mIC is the mean over all width pairs (lower = more consistent); the adjacent pairs
(0.25-0.5, 0.5-0.75, ...) are reported too, since they show where consistency breaks down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import torch


@dataclass
class Consistency:
    mic: float  # mean over all pairs
    pairs: dict[tuple[float, float], float]  # every pair (narrow, wide)
    adjacent: dict[tuple[float, float], float] = field(default_factory=dict)

    def to_json(self) -> dict:
        def key(p: tuple[float, float]) -> str:
            return f"{p[0]}-{p[1]}"

        return {
            "mIC": self.mic,
            "pairs": {key(p): v for p, v in self.pairs.items()},
            "adjacent": {key(p): v for p, v in self.adjacent.items()},
        }


def pair_inconsistency(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over samples of the squared L2 distance between row-aligned features (N, D)."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"features must be aligned (N, D) tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float((a.double() - b.double()).square().sum(dim=1).mean())


def mean_inconsistency(widths: Sequence[float], features: Sequence[torch.Tensor]) -> Consistency:
    """mIC of ``features[i]`` (features of the images width ``widths[i]`` made from shared z)."""
    if len(widths) != len(features) or len(widths) < 2:
        raise ValueError(f"need features for at least 2 widths, got {len(features)} for widths {list(widths)}")
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    ws = [float(widths[i]) for i in order]
    fs = [features[i] for i in order]
    pairs = {(ws[i], ws[j]): pair_inconsistency(fs[i], fs[j]) for i, j in combinations(range(len(ws)), 2)}
    adjacent = {(ws[i], ws[i + 1]): pairs[(ws[i], ws[i + 1])] for i in range(len(ws) - 1)}
    return Consistency(sum(pairs.values()) / len(pairs), pairs, adjacent)


@torch.no_grad()
def generator_consistency(
    sample: Callable[..., torch.Tensor],
    extract: Callable[[torch.Tensor], torch.Tensor],
    widths: Sequence[float],
    n: int = 1000,
    seed: int = 0,
) -> Consistency:
    """mIC of a generator: ``sample(n, width, seed=seed)`` must use the same z for the same seed at every
    width (as :meth:`SlimGAN.sample` does); ``extract`` maps images to features."""
    return mean_inconsistency(widths, [extract(sample(n, w, seed=seed)) for w in widths])
