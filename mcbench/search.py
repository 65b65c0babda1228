"""The run as a search: which candidates go on to the next, costlier stage, and the record of why each stopped.

Stages, cheapest first:
  screen  build the candidate, check its quality on the evaluation data, time it briefly;
  time    the full in-process timing, only for a candidate that can still reach the frontier;
  load    the HTTP load test, only for the frontier (quality vs p50) and the baseline.
A candidate over the quality budget stops after screening, with the figure; one whose p50 interval lies wholly
above another's at no better quality stops there too (it cannot reach the frontier, however long it is timed).
Every candidate keeps a record of the stage it reached and why it went no further, so the recommendation can be
checked against everything that was tried.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from mcbench.reports.quality import QualityMetric, measured, quality_of, within_budget
from mcbench.reports.schema import RunResult, VariantResult

STAGES = ("screen", "time", "load")
SCREEN_SHARE = 0.5  # new candidates are screened while the run has used under half its time budget
TIME_SHARE = 0.7  # and re-timed while under 70%; the rest is for load tests


@dataclass
class TimeBudget:
    """Wall time the search may take (None: no limit), counted once the baseline is measured."""

    seconds: float | None
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def restart(self) -> None:
        self.started = time.monotonic()

    def left(self) -> float:
        return math.inf if self.seconds is None else self.seconds - self.elapsed()

    def allows(self, share: float = 1.0) -> bool:
        """True while the run has used less than `share` of its budget."""
        return self.seconds is None or self.elapsed() < share * self.seconds

    def text(self) -> str:
        return "no time budget" if self.seconds is None else f"the {self.seconds:.0f} s time budget"


def median_interval_ms(samples_us: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval of the median from order statistics (normal approximation to the binomial)."""
    values = sorted(samples_us)
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    z = {0.9: 1.645, 0.95: 1.96, 0.99: 2.576}.get(confidence, 1.96)
    k = max(0, math.floor((n - z * math.sqrt(n)) / 2) - 1)
    return values[k] / 1e3, values[n - 1 - k] / 1e3


@dataclass(frozen=True)
class Point:
    """A screened candidate: its quality (higher is better; -inf where unknown) and its p50 with an interval."""

    name: str
    quality: float
    p50_ms: float
    low_ms: float
    high_ms: float


def point_of(run: RunResult, v: VariantResult, metric: QualityMetric) -> Point | None:
    """The candidate's point; None where it has no latency, or is over the quality budget (no candidate then)."""
    if not measured(v) or v.latency is None or within_budget(run, v, metric) is False:
        return None
    quality = quality_of(v, metric)
    if quality is None:
        quality = -math.inf
    elif not metric.higher_is_better:
        quality = -quality
    samples = v.latency.samples_us or [v.latency.p50_ms * 1e3]
    low, high = median_interval_ms(samples)
    return Point(v.name, quality, v.latency.p50_ms, low, high)


def points(run: RunResult, metric: QualityMetric) -> list[Point]:
    return [p for v in run.variants if (p := point_of(run, v, metric)) is not None]


def dominated_by(p: Point, others: list[Point]) -> Point | None:
    """The fastest candidate that is surely faster than `p` (its interval wholly below p's) at no lower quality."""
    better = [q for q in others if q.name != p.name and q.quality >= p.quality and q.high_ms < p.low_ms]
    return min(better, key=lambda q: q.p50_ms, default=None)


def beats(q: Point, p: Point | None) -> bool:
    """Whether q is at least as good as p on quality and p50, and better on one."""
    return p is not None and q.quality >= p.quality and q.p50_ms <= p.p50_ms and \
        (q.quality > p.quality or q.p50_ms < p.p50_ms)


def frontier(pts: list[Point]) -> list[Point]:
    """The Pareto frontier of quality vs p50, fastest first (ties all stay)."""
    return sorted((p for p in pts if not any(beats(q, p) for q in pts)), key=lambda p: p.p50_ms)


def record(v: VariantResult, stage: str, stopped: str | None = None) -> None:
    """Note the stage `v` reached, and why it went no further (None: it went through every stage it needed)."""
    v.search = {"stage": stage, "stopped": stopped}


def dominated_text(p: Point, by: Point) -> str:
    return (f"cannot reach the frontier: {by.name} is surely faster (p50 {by.p50_ms:.4g} ms, at most "
            f"{by.high_ms:.4g}) at no lower quality; its own p50 is {p.p50_ms:.4g} ms (at least {p.low_ms:.4g})")
