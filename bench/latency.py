"""In-process latency: warm up, then time single inferences with perf_counter until the median is stable."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from mcbench.base.settings import ConfigError, setting
from mcbench.base.settings_check import validate
from mcbench.optimizer.targets import Session
from mcbench.reports.schema import LatencyStats


@dataclass(frozen=True)
class TimingPlan:
    """How long to measure. The run stops once both minimums are met and the median has settled."""

    SECTION = "timing"  # its key in a run file and in errors: timing.min_runs

    warmup_runs: int = setting(10, flag="--warmup-runs", metavar="N", ge=0, most=100_000,
                               help="untimed calls before the timed ones")
    min_runs: int = setting(100, flag="--min-runs", metavar="N", ge=2, most=1_000_000,
                            help="the fewest timed calls")
    min_seconds: float = setting(2.0, flag="--min-seconds", metavar="SECONDS", gt=0, most=3600.0,
                                 help="the fewest seconds of timed calls")
    max_seconds: float = setting(20.0, flag="--max-seconds", metavar="SECONDS", gt=0, most=3600.0,
                                 help="the most seconds of timed calls, settled or not")
    settle_tolerance: float = setting(0.02, flag="--settle-tolerance", metavar="FRACTION", gt=0,
                                      help="settled: the medians of the two halves of the series agree within "
                                           "this fraction")

    def __post_init__(self) -> None:
        validate(self)
        if self.min_seconds > self.max_seconds:
            raise ConfigError("need 0 < min_seconds <= max_seconds", "timing")


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
