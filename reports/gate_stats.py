"""Two-sample statistics for the CI gate: ratio of medians with a bootstrap CI, a Mann-Whitney U test, a noise figure.

Standard library only (a seeded `random.Random`), so `mcbench gate` runs on a CI box with no numpy and gives the
same verdict every time it is run on the same files.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

MIN_SAMPLES = 10
MAX_BOOTSTRAP_SAMPLES = 2000  # longer series are thinned (evenly, deterministically) for the bootstrap only


def robust_cv(samples: list[float]) -> float:
    """1.4826 x MAD / median: a coefficient of variation that a few outliers (GC, a context switch) do not inflate."""
    med = statistics.median(samples)
    if med <= 0:
        return 0.0
    mad = statistics.median(abs(x - med) for x in samples)
    return 1.4826 * mad / med


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided Mann-Whitney U p-value, normal approximation with tie and continuity correction."""
    n1, n2 = len(a), len(b)
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    rank_sum_a, tie_term, i, n = 0.0, 0.0, 0, n1 + n2
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1
        rank_sum_a += avg_rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    u = rank_sum_a - n1 * (n1 + 1) / 2
    sigma2 = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if sigma2 <= 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(sigma2)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def thin(samples: list[float], limit: int = MAX_BOOTSTRAP_SAMPLES) -> list[float]:
    """At most `limit` samples, taken evenly (deterministic, so a verdict does not change between reruns)."""
    if len(samples) <= limit:
        return samples
    step = len(samples) / limit
    return [samples[int(i * step)] for i in range(limit)]


def bootstrap_ratio_ci(
    base: list[float], cand: list[float], confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap CI of median(cand) / median(base), each series resampled on its own."""
    rng = random.Random(seed)
    base, cand = thin(base), thin(cand)
    ratios = []
    for _ in range(resamples):
        mb = statistics.median(rng.choices(base, k=len(base)))
        mc = statistics.median(rng.choices(cand, k=len(cand)))
        ratios.append(mc / mb if mb > 0 else math.inf)
    ratios.sort()
    tail = (1 - confidence) / 2
    low = ratios[min(resamples - 1, int(tail * resamples))]
    high = ratios[max(0, math.ceil((1 - tail) * resamples) - 1)]
    return low, high


@dataclass(frozen=True)
class Comparison:
    """Candidate against baseline. `verdict` is regression, improvement, no change or inconclusive."""

    verdict: str
    ratio: float  # median(candidate) / median(baseline)
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    noise: float  # the larger robust CV of the two series
    n_base: int
    n_cand: int

    def describe(self) -> str:
        change = (self.ratio - 1) * 100
        return (f"median {change:+.1f}% (ratio {self.ratio:.3f}, {self.confidence:.0%} CI {self.ci_low:.3f}-"
                f"{self.ci_high:.3f}, Mann-Whitney p={self.p_value:.2g}, noise CV {self.noise:.2f}, "
                f"n={self.n_base}/{self.n_cand})")


def compare(
    base: list[float], cand: list[float], *, min_effect: float, confidence: float, max_cv: float,
    resamples: int = 2000, seed: int = 0,
) -> Comparison:
    """Decide whether `cand` is slower than `base`.

    A regression needs both a large enough effect (ratio - 1 > min_effect) and significance (the CI's lower bound
    above 1); an effect alone is noise on a shared runner, significance alone is a 0.3% change nobody cares about.
    When the data are noisier than max_cv and the CI straddles the regression threshold, the answer hinges on the
    noise: inconclusive, never a silent pass.
    """
    if len(base) < MIN_SAMPLES or len(cand) < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} samples per side, got {len(base)} and {len(cand)}")
    mb, mc = statistics.median(base), statistics.median(cand)
    ratio = mc / mb if mb > 0 else math.inf
    low, high = bootstrap_ratio_ci(base, cand, confidence, resamples, seed)
    p_value = mann_whitney_p(base, cand)
    noise = max(robust_cv(base), robust_cv(cand))
    up, down = 1 + min_effect, 1 - min_effect
    if ratio > up and low > 1:
        verdict = "regression"
    elif ratio < down and high < 1:
        verdict = "improvement"
    elif noise > max_cv and low < up < high:
        verdict = "inconclusive"
    else:
        verdict = "no change"
    return Comparison(verdict, ratio, low, high, confidence, p_value, noise, len(base), len(cand))
