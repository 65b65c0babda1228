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
MIN_ROUNDS = 5
MAX_ROUNDS = 1000  # --remeasure N: a round of a 10 ms model takes about a second, so 1000 are about 17 minutes
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
    rounds: int = 0  # > 0: decided from this many paired rounds (compare_rounds), not from pooled samples

    def describe(self) -> str:
        change = (self.ratio - 1) * 100
        if self.rounds:
            return (f"median {change:+.1f}% (geometric mean of {self.rounds} per-round ratios {self.ratio:.3f}, "
                    f"{self.confidence:.0%} CI {self.ci_low:.3f}-{self.ci_high:.3f}, sign test p={self.p_value:.2g}, "
                    f"noise CV {self.noise:.2f}, n={self.n_base}/{self.n_cand})")
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
    verdict = verdict_of(ratio, low, high, noise, min_effect, max_cv)
    return Comparison(verdict, ratio, low, high, confidence, p_value, noise, len(base), len(cand))


def verdict_of(ratio: float, low: float, high: float, noise: float, min_effect: float, max_cv: float) -> str:
    up, down = 1 + min_effect, 1 - min_effect
    if ratio > up and low > 1:
        return "regression"
    if ratio < down and high < 1:
        return "improvement"
    if noise > max_cv and low < up < high:
        return "inconclusive"
    return "no change"


def leaves_slowdown_open(c: Comparison, min_effect: float) -> bool:
    """Neither a regression nor an improvement was called, and the interval still reaches above 1 + min_effect: the
    data cannot yet rule out the slowdown the gate exists to catch (more rounds would narrow the interval)."""
    return c.verdict in ("no change", "inconclusive") and c.ci_high > 1 + min_effect


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile, from the normal one by the Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5):
    within 0.3% of the exact value for df >= 4 at p <= 0.975 (1.3% at 0.995), which is all a gate needs."""
    z = statistics.NormalDist().inv_cdf(p)
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def sign_test_p(values: list[float]) -> float:
    """Exact two-sided sign test of values around 0 (zeros dropped)."""
    signs = [v > 0 for v in values if v != 0]
    n = len(signs)
    if n == 0:
        return 1.0
    k = min(sum(signs), n - sum(signs))
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def compare_rounds(
    base_rounds: list[list[float]], cand_rounds: list[list[float]], *, min_effect: float, confidence: float,
    max_cv: float,
) -> Comparison:
    """Decide from interleaved rounds, the round as the unit: one log ratio of medians per round, a Student-t interval
    of their mean.

    Samples inside one round share the machine's state (another job's burst, a thread pool still spinning from the
    other session, the cache), so they are not independent; a bootstrap over all pooled samples treated 400 samples
    as 400 observations when the data held about as many as there were rounds, and its intervals were too narrow
    (A/A false alarms, issue 19). Pairing each round's candidate with its own baseline also cancels drift between
    rounds.
    """
    if len(base_rounds) != len(cand_rounds) or len(base_rounds) < MIN_ROUNDS:
        raise ValueError(f"need at least {MIN_ROUNDS} paired rounds, got {len(base_rounds)} and {len(cand_rounds)}")
    if any(len(r) < 3 for r in base_rounds + cand_rounds):
        raise ValueError("need at least 3 samples per side in every round")
    pairs = zip(base_rounds, cand_rounds, strict=True)
    logs = [math.log(statistics.median(c) / statistics.median(b)) for b, c in pairs]
    n = len(logs)
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * statistics.stdev(logs) / math.sqrt(n)
    mean = statistics.fmean(logs)
    ratio, low, high = math.exp(mean), math.exp(mean - half), math.exp(mean + half)
    base = [x for r in base_rounds for x in r]
    cand = [x for r in cand_rounds for x in r]
    noise = max(robust_cv(base), robust_cv(cand))
    verdict = verdict_of(ratio, low, high, noise, min_effect, max_cv)
    return Comparison(verdict, ratio, low, high, confidence, sign_test_p(logs), noise, len(base), len(cand), n)


def median_round_ratio(base_rounds: list[list[float]], cand_rounds: list[list[float]],
                       confidence: float) -> tuple[float, float, float]:
    """(ratio, low, high): the median of the per-round ratios of medians, with its distribution-free interval from
    order statistics (exact binomial: the interval of ranks k..n+1-k covers the median with at least `confidence`).

    For the confirmation round (mcbench.confirm), where one round is an outlier more often than a slowdown is subtle:
    on a loaded two-core machine one round of a two-thread eager PyTorch baseline took 31 ms a call against 0.07 ms
    in the other nine, and compare_rounds' geometric mean read a 5.5x speedup as 15.6x; the median moves one rank."""
    ratios = sorted(statistics.median(c) / statistics.median(b)
                    for b, c in zip(base_rounds, cand_rounds, strict=True))
    n, tail, k = len(ratios), (1 - confidence) / 2, 0
    while k + 1 <= n // 2 and sum(math.comb(n, i) for i in range(k + 1)) / 2**n <= tail:
        k += 1
    low, high = (ratios[k - 1], ratios[n - k]) if k else (ratios[0], ratios[-1])
    return statistics.median(ratios), low, high
