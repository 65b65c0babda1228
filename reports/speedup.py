"""Speedups against the baseline: the median ratio, its 95% interval, and the tail said in samples.

Computed here and unit-tested; the templates only lay it out (style principle 12). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcbench.reports.formatting import (
    finite,
    format_count,
    format_ms,
    format_speedup,
)
from mcbench.reports.quality import measured
from mcbench.reports.schema import ConfirmedRatio, LatencyStats, RunResult


def baseline_p50_ms(run: RunResult) -> float | None:
    """The baseline's in-process p50, the denominator of every speedup; None where it did not run."""
    for v in run.variants:
        if v.name == run.baseline and measured(v) and v.latency is not None:
            return finite(v.latency.p50_ms)
    return None



ROUGH_TAIL_SAMPLES = 1000  # a p99 from fewer samples rests on fewer than 10 observations past it
SPEEDUP_RESAMPLES = 400


@dataclass(frozen=True)
class Speedup:
    """Baseline median / variant median, with a bootstrap interval where both runs kept their raw samples."""

    ratio: float
    low: float | None = None
    high: float | None = None
    basis: str = "medians"  # or "N interleaved rounds": the confirmation round timed both side by side

    @property
    def within_noise(self) -> bool:
        return self.low is not None and self.high is not None and self.low <= 1 <= self.high

    def versus(self, baseline_ms: str) -> str:
        """'4.00× faster than the baseline's 0.400 ms (medians, 95% CI 3.91-4.08×)', or 'within noise of ...'."""
        interval = ("no raw samples for an interval" if self.low is None
                    else f"95% CI {format_speedup(self.low)}-{format_speedup(self.high)}")
        if self.within_noise:
            return (f"within noise of the baseline's {baseline_ms} ms ({self.basis}: {format_speedup(self.ratio)}, "
                    f"{interval})")
        how = f"than the baseline's {baseline_ms} ms ({self.basis}, {interval})"
        if self.ratio >= 1:
            return f"{format_speedup(self.ratio)} faster {how}"
        return f"{format_speedup(1 / self.ratio)} slower {how}"


def speedup_estimate(baseline: LatencyStats | None, latency: LatencyStats | None,
                     confirmed: ConfirmedRatio | None = None) -> Speedup | None:
    """The median speedup and its 95% interval: from the confirmation round where the variant was in one (both timed
    side by side, interleaved: mcbench.confirm), else from the two stored timings' raw samples (a bootstrap), which
    may have been taken minutes apart."""
    from mcbench.reports.gate_stats import MIN_SAMPLES, bootstrap_ratio_ci

    if confirmed is not None and finite(confirmed.ratio) and confirmed.ratio > 0:
        basis = f"{confirmed.rounds} interleaved rounds"
        return Speedup(1 / confirmed.ratio, 1 / confirmed.high, 1 / confirmed.low, basis)

    base = finite(baseline.p50_ms) if baseline is not None else None
    mine = finite(latency.p50_ms) if latency is not None else None
    if base is None or mine is None or mine <= 0:
        return None
    a, b = baseline.samples_us, latency.samples_us
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return Speedup(base / mine)
    low, high = bootstrap_ratio_ci(list(b), list(a), 0.95, SPEEDUP_RESAMPLES, seed=0)  # median(a) / median(b)
    return Speedup(base / mine, low, high)


def tail_text(latency: LatencyStats) -> str:
    """'p99 0.300 ms over 3,000 samples', marked as rough under 1,000 samples; never a ratio."""
    rough = f" (fewer than {ROUGH_TAIL_SAMPLES:,}: a rough tail)" if latency.count < ROUGH_TAIL_SAMPLES else ""
    return f"p99 {format_ms(latency.p99_ms)} ms over {format_count(latency.count)} samples{rough}"


def speedup(baseline_p50: float | None, latency: LatencyStats | None) -> float | None:
    """Baseline p50 / variant p50: above 1 is faster than the baseline."""
    p50 = finite(latency.p50_ms) if latency is not None else None
    if baseline_p50 is None or p50 is None or p50 <= 0:
        return None
    return baseline_p50 / p50
