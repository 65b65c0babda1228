"""The run as a search: which candidates go on to the next, costlier stage, and the record of why each stopped.

Stages, cheapest first:
  screen  build the candidate, check its quality on the evaluation data, time it briefly;
  time    the full in-process timing, only for a candidate that can still reach the frontier;
  load    the HTTP load test, only for the frontier (quality vs p50) and the baseline.
A candidate over the quality budget stops after screening, with the figure. One whose screening p50 interval lies
wholly above another's at no better quality is then timed side by side with that one (mcbench.confirm.side_by_side,
a few interleaved rounds), and stops only where every round says it is slower: screenings are minutes apart, and on
a shared machine a burst of other work during one of them is enough to order two equal candidates.
Every candidate keeps a record of the stage it reached and why it went no further, so the recommendation can be
checked against everything that was tried.

A candidate is priced before it is screened (its pending build steps and its screening, from what the run has
seen so far) and is not started where that price would carry the run past the share of the budget that full timing
may use: a 30 s INT8 build does not take the time the rest of the search needs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mcbench.confirm import side_by_side
from mcbench.optimizer.recipes import pass_name
from mcbench.reports.decision import NEAR, pareto
from mcbench.reports.quality import QualityMetric, measured, quality_of, within_budget
from mcbench.reports.schema import ConfirmedRatio, RunResult, VariantResult

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

    def left_before(self, share: float) -> float:
        """Seconds until the run has used `share` of its budget (inf with no budget)."""
        return math.inf if self.seconds is None else share * self.seconds - self.elapsed()

    def allows(self, share: float = 1.0) -> bool:
        """True while the run has used less than `share` of its budget."""
        return self.seconds is None or self.elapsed() < share * self.seconds

    def text(self) -> str:
        return "no time budget" if self.seconds is None else f"the {self.seconds:.0f} s time budget"


# A pass's build time as a multiple of the baseline's screening (the child's start, the session, the evaluation
# samples, a short timing), until the run has built that pass once. On NudeNet's YOLOv8n at 320 px (2 cores,
# baseline screening 7 s): nncf.int8 8.5-13 s, quant.int8_static 11 s, fuse.conv_affine 0.8 s, shape.static 0.1 s.
# Pruning fine-tunes. The longest prefix of a pass's name that is here gives its factor.
PASS_FACTORS = {"export": 1.0, "fuse": 0.2, "shape": 0.05, "quant": 2.0, "quant.int8_dynamic": 0.5, "quant.fp16": 0.3,
                "nncf": 2.0, "nncf.weight_compression": 0.5, "nncf.int8_accuracy_aware": 6.0, "prune": 10.0}
UNKNOWN_FACTOR = 2.0


@dataclass(frozen=True)
class Price:
    """What screening a candidate is expected to cost: each pending build step and the screening itself, seconds."""

    parts: tuple[tuple[str, float], ...]

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.parts)

    def text(self) -> str:
        return " + ".join(f"{name} ~{s:.0f} s" for name, s in self.parts)


@dataclass
class Prices:
    """Prices from what the run has seen: the same pass again costs what it cost (mean), an unseen one its factor
    of the baseline's screening; a screening costs the mean of those timed so far."""

    screenings: list[float] = field(default_factory=list)
    builds: dict[str, list[float]] = field(default_factory=dict)

    def saw(self, built: dict[str, float], screening_s: float) -> None:
        """A candidate's screening took `screening_s` beyond its builds, which took `built` (pass name: seconds)."""
        for name, seconds in built.items():
            self.builds.setdefault(name, []).append(seconds)
        self.screenings.append(max(screening_s, 0.0))

    def of(self, steps: list[str]) -> Price:
        """The price of building `steps` (recipe steps, e.g. 'nncf.int8(preset=mixed)') and screening the result."""
        screening = sum(self.screenings) / len(self.screenings) if self.screenings else 0.0
        return Price(tuple((step, self.build_s(pass_name(step))) for step in steps) + (("screening", screening),))

    def build_s(self, name: str) -> float:
        seen = self.builds.get(name)
        if seen:
            return sum(seen) / len(seen)
        unit = self.screenings[0] if self.screenings else 0.0
        keys = [k for k in PASS_FACTORS if name == k or name.startswith(k + ".")]
        return unit * (PASS_FACTORS[max(keys, key=len)] if keys else UNKNOWN_FACTOR)


def not_started(budget: TimeBudget, price: Price, lossless_untried: str | None = None) -> str | None:
    """Why a candidate is not screened now (None: it is): the run has used half its budget, by its price it would
    end past the share full timing may use, or (`lossless_untried`, for a lossy candidate) a lossless candidate
    was left untried for lack of time, and no lossy one is built while one is."""
    if not budget.allows(SCREEN_SHARE):
        return f"not tried: {budget.text()} was half spent before its turn"
    if lossless_untried is not None:
        return (f"not tried: {lossless_untried}, which keeps FP32 numerics, did not fit {budget.text()}, and a lossy "
                "candidate is never built while a lossless one is untried")
    left = budget.left_before(TIME_SHARE)
    if price.seconds > left:
        return (f"not tried: priced at about {price.seconds:.0f} s ({price.text()}), more than the {left:.0f} s "
                f"left before {TIME_SHARE:.0%} of {budget.text()}")
    return None


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


def _frontier_of(pts: list[Point]) -> list[Point]:
    return pareto(pts, lambda p: p.quality, lambda p: p.p50_ms, NEAR)


def beats(q: Point, p: Point | None) -> bool:
    """Whether q is at least as good as p on quality and more than NEAR faster, or better on quality and no slower:
    p is off the frontier of the two (reports.decision.pareto, the one Pareto implementation)."""
    return p is not None and _frontier_of([q, p]) == [q]


def frontier(pts: list[Point]) -> list[Point]:
    """The Pareto frontier of quality vs p50 (reports.decision.pareto), fastest first (ties all stay)."""
    return sorted(_frontier_of(pts), key=lambda p: p.p50_ms)


def record(v: VariantResult, stage: str, stopped: str | None = None) -> None:
    """Note the stage `v` reached, and why it went no further (None: it went through every stage it needed)."""
    v.search = {"stage": stage, "stopped": stopped}


def suspects(run: RunResult, vs: list[VariantResult], pts: list[Point], metric: QualityMetric) -> dict[str, str]:
    """name -> the candidate its screening says is surely faster at no lower quality (`dominated_by`), for each of
    `vs` that has one (never the baseline): the pairs to time side by side before one of them stops."""
    out = {}
    for v in vs:
        p = point_of(run, v, metric)
        by = dominated_by(p, pts) if p is not None and v.name != run.baseline else None
        if by is not None:
            out[v.name] = by.name
    return out


def stopped_side_by_side(run: RunResult, named: dict[str, str], say: Callable[[str], None]) -> set[str]:
    """The suspects (`suspects`) that stop: those every interleaved round of the pair says are slower
    (mcbench.confirm.side_by_side); the others go on, and the terminal says why. Each stop is on record."""
    if not named:
        return set()
    stopped = set()
    for name, evidence in side_by_side(run, [(by, name) for name, by in named.items()]).items():
        by = named[name]
        if isinstance(evidence, str) or evidence.low <= 1.0:
            why = evidence if isinstance(evidence, str) else (
                f"median {evidence.ratio:.3f}x, interval {evidence.low:.3f}-{evidence.high:.3f}")
            say(f"  {name}: its screening was slower than {by}'s, side by side not surely ({why}): it goes on")
            continue
        record(run.variant(name), "screen", dominated_text(by, evidence))
        say(f"  {name}: stops here, {dominated_text(by, evidence)}")
        stopped.add(name)
    return stopped


def dominated_text(by: str, r: ConfirmedRatio) -> str:
    """Why a candidate stops: slower than `by`, timed side by side (mcbench.confirm.side_by_side)."""
    return (f"cannot reach the frontier: {by} is surely faster at no lower quality, timed side by side (this one's "
            f"median {r.ratio:.3f}x its, interval {r.low:.3f}-{r.high:.3f}, {r.rounds} interleaved rounds)")


def summary(run: RunResult, searched: bool, budget: TimeBudget) -> dict:
    """results.json's record of the search (`run.search`): whether it searched, its budget and time, the stages,
    and the candidates it did not try."""
    not_tried = [v.name for v in run.variants if (v.search or {}).get("stage") == "plan"]
    return {"searched": searched, "time_budget_s": budget.seconds,
            "elapsed_s": round(budget.elapsed(), 1), "stages": list(STAGES), "not_tried": not_tried}
