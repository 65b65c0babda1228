"""In-process latency: warm up, then time single inferences with perf_counter until the median is stable."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from mcbench.optimizer.targets import Session
from mcbench.reports.schema import LatencyStats


@dataclass(frozen=True)
class TimingPlan:
    """How long to measure. The run stops once both minimums are met and the median has settled."""

    warmup_runs: int = 10
    min_runs: int = 100
    min_seconds: float = 2.0
    max_seconds: float = 20.0
    settle_tolerance: float = 0.02  # medians of the two halves of the series agree within 2%

    def __post_init__(self) -> None:
        if self.min_runs < 2 or self.warmup_runs < 0:
            raise ValueError("min_runs must be at least 2 and warmup_runs at least 0")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError("need 0 < min_seconds <= max_seconds")


QUICK_PLAN = TimingPlan(warmup_runs=5, min_runs=30, min_seconds=0.5, max_seconds=3.0, settle_tolerance=0.05)


def halves_disagree(samples: list[float], tolerance: float) -> bool:
    """True while the median of the first half and of the second half differ by more than `tolerance`."""
    half = len(samples) // 2
    first, second = statistics.median(samples[:half]), statistics.median(samples[half:])
    return abs(second - first) > tolerance * min(first, second)


def measure_latency(session: Session, feeds: dict[str, np.ndarray], plan: TimingPlan) -> tuple[LatencyStats, bool]:
    """Time `session.run(feeds)` one call at a time; returns the stats and whether the median settled."""
    for _ in range(plan.warmup_runs):
        session.run(feeds)
    samples: list[float] = []
    clock = time.perf_counter
    start = clock()
    while True:
        t0 = clock()
        session.run(feeds)
        samples.append(clock() - t0)
        elapsed = clock() - start
        if len(samples) < plan.min_runs or elapsed < plan.min_seconds:
            continue
        settled = not halves_disagree(samples, plan.settle_tolerance)
        if settled or elapsed >= plan.max_seconds:
            return LatencyStats.from_seconds(samples), settled
