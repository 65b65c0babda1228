"""Which variant is best: the objective, the quality budget test, the Pareto frontier and the choice, in one place.

Every "best" in mcbench reads this module: the summary table's frontier mark, the charts' frontier line and
diamonds, the recommendation's words (`reports.decide` words a `Decision`), the capacity table's highlight and
MLflow's tags. The run declares what "best" means (`--objective`, recorded as results.json's `objective`):

| objective | figure | better |
| --- | --- | --- |
| p50 | in-process median latency | lower |
| p99 | in-process p99 latency | lower |
| throughput | peak HTTP throughput under the p99 budget (the capacity figure, from the load sweeps) | higher |
| cost | cost per million requests at that throughput, where a profile or --cost-per-hour prices it | lower |

The frontier is quality (the run's primary metric, `reports.quality`) against the objective's figure, over the
variants that are measured, within the quality budget and (in a searched run) timed in full; one implementation
(`pareto`) serves higher- and lower-is-better metrics and objectives alike, because both axes are oriented before
it is called. Two variants whose figures are within NEAR (10%) of each other at equal quality both stay on it: their
timings were taken minutes apart, and the confirmation round orders them side by side. The choice is the frontier's
best figure among the variants within the budget, so the recommended variant is always on the frontier the table
marks and the chart draws. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from mcbench.base.errors import UserError
from mcbench.reports.formatting import finite, format_ms, format_rps
from mcbench.reports.quality import QualityMetric, baseline_quality, measured, quality_metric, quality_of, within_budget
from mcbench.reports.schema import Confirmation, ConfirmedRatio, RunResult, VariantResult

THIS_MACHINE = ""  # the profile key of a run that named no hardware profile
DEFAULT_OBJECTIVE = "p50"
LEGACY_OBJECTIVE = "p99"  # what decided a results file written before the objective was recorded

T = TypeVar("T")


def _p50(v: VariantResult) -> float | None:
    return finite(v.latency.p50_ms) if v.latency is not None else None


def _p99(v: VariantResult) -> float | None:
    return finite(v.latency.p99_ms) if v.latency is not None else None


def _throughput(v: VariantResult) -> float | None:
    rps = finite(v.capacity.max_rps_under_budget) if v.capacity is not None else None
    return rps if rps is not None and rps > 0 else None


def _cost(v: VariantResult) -> float | None:
    return finite(v.capacity.cost_per_million) if v.capacity is not None else None


@dataclass(frozen=True)
class Objective:
    """What "best" means: a figure per variant (None where the run has none) and which way is better."""

    key: str
    label: str  # "in-process p50 latency"
    figure: Callable[[VariantResult], float | None] = field(repr=False, compare=False)
    higher_is_better: bool = False
    unit: str = "ms"

    def text(self, value: float | None) -> str:
        """'0.080 ms', '3,100 req/s' or '0.074 per million requests'."""
        if value is None:
            return "n/a"
        if self.key == "cost":
            return f"{value:,.4g} per million requests"
        return f"{format_rps(value)} req/s" if self.unit == "req/s" else f"{format_ms(value)} ms"

    @property
    def best_word(self) -> str:
        return "highest" if self.higher_is_better else "lowest"

    @property
    def axis(self) -> str:
        """A chart's axis title: 'in-process p50 latency (ms)', 'cost per million requests'."""
        return self.label if self.key == "cost" else f"{self.label} ({self.unit})"

    def cost(self, v: VariantResult) -> float:
        """The figure oriented so that lower is better (a throughput negated); only for a variant that has one."""
        value = self.figure(v)
        return -value if self.higher_is_better else value


OBJECTIVES: dict[str, Objective] = {
    "p50": Objective("p50", "in-process p50 latency", _p50),
    "p99": Objective("p99", "in-process p99 latency", _p99),
    "throughput": Objective("throughput", "peak HTTP throughput under the p99 budget", _throughput, True, "req/s"),
    "cost": Objective("cost", "cost per million requests", _cost, False, "per million requests"),
}


def objective_choices() -> tuple[str, ...]:
    return tuple(OBJECTIVES)


class ObjectiveError(UserError):
    """An objective mcbench does not know; the message lists those it does."""


def parse_objective(key: str, where: str = "objective") -> Objective:
    if key not in OBJECTIVES:
        raise ObjectiveError(f"{where} {key!r} is not one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[key]


def objective_of(run: RunResult) -> Objective:
    """The objective the run declared (results.json's `objective`, else its config's); p99 for an older file."""
    key = run.objective or run.config.get("objective") or LEGACY_OBJECTIVE
    return parse_objective(str(key), "the results' objective")


def objective_sentence(run: RunResult) -> str:
    """'Objective: in-process p50 latency (--objective p50): among the variants within the quality budget, ...'"""
    objective = objective_of(run)
    declared = run.objective or run.config.get("objective")
    source = f"--objective {objective.key}" if declared else f"{objective.key}: this results file records none"
    return (f"Objective: {objective.label} ({source}). Among the variants within the quality budget, the one with "
            f"the {objective.best_word} {objective.label} is recommended.")


# ---------------------------------------------------------------- the Pareto frontier


NEAR = 0.10  # figures timed minutes apart cannot order two variants closer than this: both stay on the frontier,
# and the confirmation round (mcbench.confirm) times them side by side. On a loaded 2-core host the demo's ort-fp32 and
# ort-fp32-t1 screened 3% apart in either order from run to run, and the pick followed.


def pareto(items: Sequence[T], quality: Callable[[T], float], cost: Callable[[T], float],
           near: float = 0.0) -> list[T]:
    """The items no other item dominates, in their given order: `quality` higher is better, `cost` lower is better.

    One item dominates another where it is at least as good on quality and cheaper by more than `near` (a fraction
    of the other's cost), or better on quality at no higher cost; identical items do not dominate each other, so ties
    all stay, and with `near` so do items within it of one another. Orient both figures before calling (negate an
    error metric, a throughput): `mcbench.search` calls it on its own points with `cost=lambda p: p.p50_ms`.
    """
    def dominates(q: T, p: T) -> bool:
        qq, qp, cq, cp = quality(q), quality(p), cost(q), cost(p)
        return qq >= qp and (cq < cp - near * abs(cp) or (qq > qp and cq <= cp))

    return [p for p in items if not any(dominates(q, p) for q in items)]


def oriented_quality(v: VariantResult, metric: QualityMetric) -> float:
    """The variant's primary quality figure, higher is better (an error negated); only for one that has it."""
    value = quality_of(v, metric)
    return value if metric.higher_is_better else -value


def profile_names(run: RunResult) -> list[str]:
    """The hardware profiles the run's variants belong to, in run order; [THIS_MACHINE] where it named none."""
    names: list[str] = []
    for v in run.variants:
        if v.profile and v.profile not in names:
            names.append(v.profile)
    return names or [THIS_MACHINE]


def profile_variants(run: RunResult, profile: str) -> list[VariantResult]:
    """A profile's own variants plus those no profile claims (the shared FP32 baseline)."""
    if profile == THIS_MACHINE:
        return list(run.variants)
    return [v for v in run.variants if v.profile in (profile, None)]


def scored(run: RunResult, profile: str, objective: Objective, metric: QualityMetric) -> list[VariantResult]:
    """The variants that can be placed: measured, with a quality figure and the objective's figure.

    In a profile run, only what was compiled and measured for that profile's hardware; in a searched run, only
    what was timed in full (a screening's short series can rule a candidate out, not pick it).
    """
    own = run.variants if profile == THIS_MACHINE else [v for v in run.variants if v.profile == profile]
    pool = [v for v in own if measured(v) and quality_of(v, metric) is not None and objective.figure(v) is not None]
    if (run.search or {}).get("searched"):
        pool = [v for v in pool if (v.search or {}).get("stage") in ("time", "load")] or pool
    return pool


def frontier(run: RunResult, profile: str = THIS_MACHINE, objective: Objective | None = None,
             metric: QualityMetric | None = None) -> list[VariantResult]:
    """The profile's Pareto frontier of quality against the objective, best figure first; never over budget."""
    objective, metric = objective or objective_of(run), metric or quality_metric(run)
    pool = [v for v in scored(run, profile, objective, metric) if within_budget(run, v, metric) is not False]
    front = pareto(pool, lambda v: oriented_quality(v, metric), objective.cost, NEAR)
    return sorted(front, key=lambda v: (objective.cost(v), -oriented_quality(v, metric)))


def frontier_names(run: RunResult, objective: Objective | None = None) -> set[str]:
    """Every variant on its profile's frontier: the table's mark and the charts' diamonds."""
    return {v.name for p in profile_names(run) for v in frontier(run, p, objective)}


# ---------------------------------------------------------------- the choice


@dataclass(frozen=True)
class Decision:
    """One profile's answer and the counts its words are made of.

    kind: "ship" (chosen is within the budget and has the best figure: a compiled variant, or the baseline where
    none beats it), "nearest-miss" (no compiled variant is within the budget: chosen misses it by the least) or
    "none" (why says why).
    """

    profile: str
    objective: Objective
    metric: QualityMetric
    kind: str
    chosen: VariantResult | None = None
    frontier: list[VariantResult] = field(default_factory=list)
    compared: list[VariantResult] = field(default_factory=list)  # compiled, within budget, with the figure
    within: list[VariantResult] = field(default_factory=list)  # compiled, measured, within the budget
    over: list[VariantResult] = field(default_factory=list)  # compiled, measured, over the budget
    runner_up: VariantResult | None = None  # the best compiled variant, where the baseline wins
    why: str = ""
    confirmation: Confirmation | None = None  # the final side-by-side round that chose, where one was held


def confirmed(run: RunResult, profile: str, objective: Objective) -> Confirmation | None:
    """The run's confirmation round where it decided this profile's choice for this objective (mcbench.confirm)."""
    c = run.confirmation
    names = {v.name for v in run.variants}
    if c is None or c.pick is None or c.objective != objective.key or c.profile != profile or c.pick not in names:
        return None
    return c


def confirmed_ratio(d: Decision, name: str) -> ConfirmedRatio | None:
    """The named finalist's ratio to the baseline in the decision's confirmation round, where it has one."""
    return next((r for r in d.confirmation.ratios if r.name == name), None) if d.confirmation else None


def _compiled(run: RunResult, profile: str) -> list[VariantResult]:
    own = run.variants if profile == THIS_MACHINE else [v for v in run.variants if v.profile == profile]
    return [v for v in own if v.name != run.baseline]


def _rank(objective: Objective, metric: QualityMetric, run: RunResult) -> Callable[[VariantResult], tuple]:
    """Best figure first; on a tie the higher quality, then the baseline (nothing to deploy), then the name."""
    return lambda v: (objective.cost(v), -oriented_quality(v, metric), v.name != run.baseline, v.name)


def distance(run: RunResult, v: VariantResult, metric: QualityMetric) -> float:
    """How far the variant is from meeting the budget (smaller is nearer), for naming the nearest miss."""
    from mcbench.reports.quality import shortfall

    if metric.bound:
        value = quality_of(v, metric) or 0.0
        return metric.budget - value if metric.higher_is_better else value - metric.budget
    return shortfall(run, v, metric) or 0.0


def decide(run: RunResult, profile: str = THIS_MACHINE, objective: Objective | None = None) -> Decision:
    """The variant with the objective's best figure within the quality budget; else the nearest miss."""
    objective, metric = objective or objective_of(run), quality_metric(run)
    base = Decision(profile, objective, metric, "none")
    if baseline_quality(run, metric) is None and not metric.bound:
        why = f"the baseline {run.baseline or '(none)'} has no {metric.label}, so the quality budget cannot be applied"
        return _with(base, why=why)
    compiled = [v for v in _compiled(run, profile) if measured(v)]
    within = [v for v in compiled if within_budget(run, v, metric)]
    over = [v for v in compiled if within_budget(run, v, metric) is False]
    pool = scored(run, profile, objective, metric)
    front = frontier(run, profile, objective, metric)
    within_names = {v.name for v in within}
    compared = [v for v in pool if v.name in within_names]
    counts = {"frontier": front, "compared": compared, "within": within, "over": over}
    keep = [v for v in pool if v.name == run.baseline and within_budget(run, v, metric)]
    if compared:
        rank = _rank(objective, metric, run)
        best = min(compared, key=rank)
        chosen = min([best, *keep], key=rank)
        runner_up = best if chosen is not best else None
        c = confirmed(run, profile, objective)
        if c is not None:  # the final round, side by side with the baseline, decides
            chosen = run.variant(c.pick)
            fastest = min(c.ratios, key=lambda r: r.ratio).name
            runner_up = run.variant(fastest) if chosen.name == run.baseline else None
            counts["confirmation"] = c
        return _with(base, kind="ship", chosen=chosen, runner_up=runner_up, **counts)
    if keep and (within or not compiled):  # nothing compiled was measured (a run cut by its time budget), or the
        # search stopped each one within budget as surely slower than one it timed: the baseline stands
        return _with(base, kind="ship", chosen=keep[0], **counts)
    if within:
        return _with(base, why=f"no compiled variant within the quality budget has a figure for the objective "
                               f"({objective.label})", **counts)
    misses = [v for v in pool if v.name != run.baseline] or [v for v in compiled if quality_of(v, metric) is not None]
    if misses:
        nearest = min(misses, key=lambda v: (distance(run, v, metric), objective.cost(v)
                                             if objective.figure(v) is not None else float("inf"), v.name))
        return _with(base, kind="nearest-miss", chosen=nearest, **counts)
    return _with(base, why="no variant of this profile was measured", **counts)


def _with(base: Decision, **changes) -> Decision:
    return replace(base, **changes)


def decisions(run: RunResult, objective: Objective | None = None) -> list[Decision]:
    """One decision per hardware profile of the run (one for this machine where it named none)."""
    return [decide(run, p, objective) for p in profile_names(run)]
