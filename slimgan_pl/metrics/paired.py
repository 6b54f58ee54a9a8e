"""Paired comparisons over training seeds: a percentile bootstrap interval of the mean difference and
the non-inferiority verdict read from it (the reproduction study and the universal-vs-SlimGAN benchmark)."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence


def paired_bootstrap_interval(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, resamples: int = 20000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean difference, low, high): percentile bootstrap interval of mean(a - b) over pairs.

    The pairs (a[i], b[i]) are resampled together (paired by seed). With few pairs (n^n <= 200k, e.g.
    3 seeds: 27 resamples) every resample is enumerated, so the interval is exact and needs no RNG;
    otherwise ``resamples`` draws from ``random.Random(seed)``. Bounds are the inverted-CDF quantiles
    (the smallest resample mean whose cumulative share reaches (1 - level)/2, resp. (1 + level)/2).
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same number (>= 1) of paired values, got {len(a)} and {len(b)}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(diffs)
    if n**n <= 200_000:
        means = [sum(combo) / n for combo in itertools.product(diffs, repeat=n)]
    else:
        rng = random.Random(seed)
        means = [sum(rng.choices(diffs, k=n)) / n for _ in range(resamples)]
    means.sort()

    def quantile(q: float) -> float:  # inverted CDF: first value whose cumulative share >= q
        index = max(0, math.ceil(q * len(means) - 1e-9) - 1)
        return means[index]

    tail = (1.0 - level) / 2.0
    return statistics.mean(diffs), quantile(tail), quantile(1.0 - tail)


def verdict(low: float, high: float, margin: float) -> str:
    """The claim "A matches or beats B" for an interval of FID(A) - FID(B) (lower FID is better), a
    non-inferiority test with ``margin`` (FID points): ``held`` when the whole interval is below +margin,
    ``not held`` when it is wholly above, else ``undecided``."""
    if not margin >= 0.0 or low > high:
        raise ValueError(f"need margin >= 0 and low <= high, got margin={margin}, interval=({low}, {high})")
    if high < margin:
        return "held"
    if low > margin:
        return "not held"
    return "undecided"
