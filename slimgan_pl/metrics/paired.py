"""Comparisons over training seeds, valid at the few seeds a GAN study can afford.

One module for every place seeds meet (the reproduction study, the fast-mode arm, universal vs
SlimGAN, ``slimgan-collect``), so the same numbers always give the same interval:

* :func:`mean_interval` - mean, sd and the Student-t interval of one metric over seeds (a table cell);
* :func:`paired_comparison` - ``A - B`` paired by seed: the paired Student-t interval of the mean
  difference (the default, valid at any n >= 2 for roughly normal differences), an exact sign-flip
  permutation test as a second opinion (SciPy), the non-inferiority verdict, and the number of seeds
  estimated to decide an undecided question at the observed spread.

No bootstrap: a percentile bootstrap at 3 seeds enumerates 27 resamples and its "95% interval" is exactly
[min, max] of the three differences, which covers the true mean far less than 95% of the time (about 75%
for normal differences: ``tests/test_paired.py`` measures it). Pure SciPy/NumPy, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

METHOD = "paired t"  # the interval every verdict uses; named in every report
MAX_SEEDS_ESTIMATE = 1000  # "seeds to decide" beyond this is reported as not reachable


@dataclass(frozen=True)
class MeanInterval:
    """One metric over n seeds: mean, sample sd and the t interval of the mean (``low``/``high`` are
    None with one seed: no spread, no interval)."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None
    level: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_interval(values: Sequence[float], level: float = 0.95) -> MeanInterval:
    """Mean, sd and the Student-t ``level`` interval of the mean of ``values`` (n - 1 degrees of freedom)."""
    x = np.asarray([float(v) for v in values], dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_interval needs at least one value")
    _check_level(level)
    mean = float(x.mean())
    if x.size == 1:
        return MeanInterval(1, mean, None, None, None, level)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1)) * sd / math.sqrt(x.size)
    return MeanInterval(int(x.size), mean, sd, mean - half, mean + half, level)


@dataclass(frozen=True)
class PairedResult:
    """``A - B`` over n paired seeds (lower is better for FID-like metrics).

    ``low``/``high``: the paired t interval of the mean difference; ``verdict``: the non-inferiority claim
    "A matches or beats B within ``margin``" (held / not held / undecided, see :func:`verdict`);
    ``p_permutation``: the exact two-sided sign-flip permutation p-value of a zero mean difference;
    ``seeds_to_decide``: for an undecided verdict, the estimated number of seeds at which the interval's
    half-width at the observed sd falls below ``|mean - margin|`` (None when decided, or when it is
    unreachable: a mean exactly at the margin or no spread measured)."""

    n: int
    method: str
    level: float
    mean: float
    sd: float
    low: float
    high: float
    margin: float
    verdict: str
    p_permutation: float
    seeds_to_decide: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def interval_text(self, digits: int = 2) -> str:
        return f"[{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def to_decide(self) -> str:
        """For an undecided verdict, how many seeds would decide it: ``~11 seeds to decide``, ``over 1000
        seeds to decide`` (beyond the estimate's range) or ``not decidable at this spread`` (the mean exactly
        at the margin, or no spread measured); empty when decided."""
        if self.verdict != "undecided":
            return ""
        if self.seeds_to_decide:
            return f"~{self.seeds_to_decide} seeds to decide"
        if self.mean != self.margin and self.sd > 0.0:
            return f"over {MAX_SEEDS_ESTIMATE} seeds to decide"
        return "not decidable at this spread"

    def summary(self, digits: int = 2) -> str:
        """E.g. ``undecided, [-0.17, +3.34] vs margin 1.10 (paired t, n=3; ~11 seeds to decide)``."""
        interval = self.interval_text(digits)
        text = f"{self.verdict}, {interval} vs margin {self.margin:.{digits}f} ({self.method}, n={self.n}"
        if self.verdict == "undecided":
            text += f"; {self.to_decide()}"
        return text + ")"


def paired_comparison(a: Sequence[float], b: Sequence[float], margin: float, level: float = 0.95) -> PairedResult:
    """Compare ``a`` with ``b`` paired by index (seed): paired t interval, verdict, permutation test, seeds."""
    if len(a) != len(b):
        raise ValueError(f"need the same number of paired values, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a paired interval needs at least 2 seeds, got {len(a)}")
    _check_level(level)
    diffs = np.asarray([float(x) - float(y) for x, y in zip(a, b)], dtype=np.float64)
    n = int(diffs.size)
    ci = stats.ttest_rel(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)).confidence_interval(
        confidence_level=level
    )
    low, high = float(ci.low), float(ci.high)
    mean, sd = float(diffs.mean()), float(diffs.std(ddof=1))
    if sd == 0.0:  # SciPy returns NaN bounds for identical differences: the interval is the point
        low = high = mean
    decided = verdict(low, high, margin)
    return PairedResult(
        n=n,
        method=METHOD,
        level=level,
        mean=mean,
        sd=sd,
        low=low,
        high=high,
        margin=float(margin),
        verdict=decided,
        p_permutation=sign_flip_p_value(diffs),
        seeds_to_decide=None if decided != "undecided" else seeds_to_decide(mean, sd, margin, level, n),
    )


def sign_flip_p_value(diffs: Sequence[float]) -> float:
    """Exact two-sided p-value of "mean difference = 0" under random sign flips of the paired differences
    (all 2^n flips up to n = 20, else 100k random ones; SciPy's ``permutation_test``, samples permutation)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 1:
        raise ValueError("sign_flip_p_value needs at least one difference")
    if np.all(d == 0):
        return 1.0
    result = stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=100_000 if d.size > 20 else np.inf,
        random_state=0,
    )
    return float(min(1.0, result.pvalue))


def seeds_to_decide(mean: float, sd: float, margin: float, level: float = 0.95, n_now: int = 2) -> int | None:
    """Smallest n (>= ``n_now`` + 1) at which the t interval's half-width ``t(n-1) * sd / sqrt(n)`` falls
    below ``|mean - margin|``, assuming the observed mean and sd stay: the usual sample-size formula for a
    t interval. None when that distance is 0 or the spread is unknown (sd 0 or NaN), or beyond
    ``MAX_SEEDS_ESTIMATE``."""
    distance = abs(mean - margin)
    if not (distance > 0.0) or not (sd > 0.0) or math.isnan(sd):
        return None
    q = 0.5 + level / 2.0
    for n in range(max(2, n_now + 1), MAX_SEEDS_ESTIMATE + 1):
        if float(stats.t.ppf(q, n - 1)) * sd / math.sqrt(n) < distance:
            return n
    return None


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


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
