"""`mcbench gate`: check a run against latency budgets and against a baseline run, without crying wolf.

One check per budget item and per baseline comparison; the outcome's exit code is what CI acts on:
0 all pass, 1 a budget broken or a regression, 2 could not evaluate, 3 inconclusive (too noisy to say).
Reads only the results schema, so it runs where no model runtime is installed.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

from mcbench.base.errors import UserError
from mcbench.reports.gate_budgets import LOWER_BOUNDS, Budget, Defaults, GateConfig, GateConfigError, load_budgets
from mcbench.reports.gate_stats import MIN_SAMPLES, Comparison, compare, compare_rounds
from mcbench.reports.quality import over_budget_text, quality_metric, within_budget
from mcbench.reports.schema import RunResult, VariantResult

__all__ = ["Check", "Outcome", "GateConfigError", "GateDataError", "evaluate", "load_budgets"]

EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INCONCLUSIVE = 0, 1, 2, 3


class GateDataError(UserError):
    """Data the gate needs is gone (e.g. the artifacts to re-measure); exit 2 with what to do."""


@dataclass(frozen=True)
class Check:
    """One budget item for one variant, or one baseline comparison; `message` carries the figures."""

    name: str
    kind: str  # "budget" | "baseline"
    status: str  # pass | fail | inconclusive | error
    message: str


@dataclass
class Outcome:
    checks: list[Check] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for c in self.checks if c.status == status)

    @property
    def exit_code(self) -> int:
        """A known failure is the most useful answer, so it wins over missing data; noise only when all else passed."""
        if self.count("fail"):
            return EXIT_FAIL
        if self.count("error"):
            return EXIT_ERROR
        if self.count("inconclusive"):
            return EXIT_INCONCLUSIVE
        return EXIT_PASS

    @property
    def verdict(self) -> str:
        return {EXIT_PASS: "pass", EXIT_FAIL: "fail", EXIT_ERROR: "error", EXIT_INCONCLUSIVE: "inconclusive"}[
            self.exit_code
        ]


def _matches(budget: Budget, v: VariantResult) -> bool:
    if not fnmatch.fnmatchcase(v.name, budget.variant):
        return False
    return budget.profile is None or (v.profile is not None and fnmatch.fnmatchcase(v.profile, budget.profile))


def _metric_value(v: VariantResult, metric: str, budget: Budget) -> tuple[float | None, str]:
    """The measured value a limit applies to, or None and why it is missing."""
    if metric in ("p50_ms", "p99_ms"):
        if v.latency is None:
            return None, "no in-process latency in the results"
        return getattr(v.latency, metric), f"n={v.latency.count}"
    if metric == "min_accuracy":
        if v.accuracy is None or v.accuracy.top1 is None:
            return None, "no top-1 accuracy in the results (no labelled dataset?)"
        return v.accuracy.top1, f"n={v.accuracy.samples}"
    if metric == "max_size_bytes":
        size = v.artifact.get("size_bytes")
        return (float(size), "artifact size") if isinstance(size, int | float) else (None, "no artifact size_bytes")
    if v.load is None or not v.load.steps:
        return None, "no load test in the results (run without --no-load)"
    if metric == "load_p99_ms":
        step = next((s for s in v.load.steps if s.users == budget.users), None)
        if step is None:
            have = ", ".join(str(s.users) for s in v.load.steps)
            return None, f"no load step with {budget.users} users (steps: {have})"
        if step.latency is None:
            return None, f"the {budget.users}-user load step has no latency"
        return step.latency.p99_ms, f"{budget.users} users, n={step.latency.count}"
    bound = budget.limits.get("load_p99_ms")
    steps = [s for s in v.load.steps if bound is None or (s.latency is not None and s.latency.p99_ms <= bound)]
    where = "any load step" if bound is None else f"load steps with p99 <= {bound:g} ms"
    return max((s.throughput_rps for s in steps), default=0.0), where


def _budget_check(v: VariantResult, metric: str, budget: Budget) -> Check:
    limit = budget.limits[metric]
    op = ">=" if metric in LOWER_BOUNDS else "<="
    name = f"{v.name}: {metric} {op} {limit:g}"
    if v.status != "ok":
        return Check(name, "budget", "error", f"variant {v.status}: {v.error or 'no reason recorded'}")
    value, context = _metric_value(v, metric, budget)
    if value is None:
        return Check(name, "budget", "error", context)
    ok = value >= limit if metric in LOWER_BOUNDS else value <= limit
    return Check(name, "budget", "pass" if ok else "fail", f"{metric} = {value:.4g} ({context}); limit {op} {limit:g}")


def quality_check(run: RunResult, v: VariantResult) -> Check | None:
    """The run's own quality budget (its primary metric, reports.quality) for a variant the gate budgets;
    None where the run cannot tell (no figure for it)."""
    metric = quality_metric(run)
    ok = within_budget(run, v, metric) if v.status == "ok" else None
    if ok is None:
        return None
    return Check(f"{v.name}: quality {metric.budget_text()}", "budget", "pass" if ok else "fail",
                 f"{over_budget_text(run, v, metric)}: {'within' if ok else 'OVER'} the run's quality budget")


def budget_checks(run: RunResult, config: GateConfig) -> list[Check]:
    checks: list[Check] = []
    quality_checked: set[str] = set()
    for i, budget in enumerate(config.budgets):
        matched = [v for v in run.variants if _matches(budget, v) and v.status != "skipped"]
        if not matched:
            names = ", ".join(v.name for v in run.variants) or "none"
            checks.append(Check(f"[[budget]] #{i + 1} variant={budget.variant!r}", "budget", "error",
                                f"matches no measured variant (variants: {names})"))
        for v in matched:
            checks.extend(_budget_check(v, metric, budget) for metric in budget.limits)
            quality = quality_check(run, v) if v.name not in quality_checked else None
            if quality is not None:
                quality_checked.add(v.name)
                checks.append(quality)
    return checks


def comparison_check(name: str, base_us: list[float], cand_us: list[float], d: Defaults, source: str) -> Check:
    """One baseline comparison, from raw samples; `source` says where the samples came from. A sample that is not
    a finite positive number (a doctored or damaged file; the schema refuses them) is an error, never a pass."""
    bad = sum(not _latency(x) for x in [*base_us, *cand_us])
    if bad:
        return Check(f"{name}: latency vs baseline", "baseline", "error",
                     f"{bad} raw samples are not finite positive latencies; the comparison cannot be made")
    if len(base_us) < MIN_SAMPLES or len(cand_us) < MIN_SAMPLES:
        return Check(f"{name}: latency vs baseline", "baseline", "error",
                     f"too few raw samples to compare ({len(base_us)} baseline, {len(cand_us)} candidate; "
                     f"need {MIN_SAMPLES})")
    c = compare(base_us, cand_us, min_effect=d.min_effect, confidence=d.confidence, max_cv=d.max_cv,
                resamples=d.resamples, seed=d.seed)
    return _check_of(name, c, source, d)


def _latency(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def rounds_check(name: str, base_rounds: list[list[float]], cand_rounds: list[list[float]], d: Defaults,
                 how: str = "") -> Check:
    """One baseline comparison from interleaved rounds (re-measured here), each round a paired observation; `how`
    says how the sessions' threads were set up (the onnxruntime thread pools), for the message."""
    c = compare_rounds(base_rounds, cand_rounds, min_effect=d.min_effect, confidence=d.confidence, max_cv=d.max_cv)
    return _check_of(name, c, "re-measured interleaved" + (f", {how}" if how else ""), d)


def _check_of(name: str, c: Comparison, source: str, d: Defaults) -> Check:
    status = {"regression": "fail", "inconclusive": "inconclusive"}.get(c.verdict, "pass")
    extra = f"; noise CV {c.noise:.2f} > max_cv {d.max_cv:g}" if c.verdict == "inconclusive" else ""
    return Check(f"{name}: latency vs baseline", "baseline", status,
                 f"{c.verdict} ({source}): {c.describe()}; threshold +{d.min_effect:.0%}{extra}")


# name -> (baseline rounds, candidate rounds, how the threads were set up: "" or e.g. "one shared onnxruntime thread
# pool of 2 threads")
Remeasured = dict[str, tuple[list[list[float]], list[list[float]], str]]


def baseline_checks(run: RunResult, baseline: RunResult, d: Defaults, remeasured: Remeasured | None) -> list[Check]:
    """Compare every variant measured in both runs; `remeasured` replaces the stored samples where given."""
    base_by_name = {v.name: v for v in baseline.variants if v.status == "ok"}
    checks = []
    for v in run.variants:
        if v.status != "ok" or v.name not in base_by_name:
            continue
        if remeasured and v.name in remeasured:
            base_rounds, cand_rounds, how = remeasured[v.name]
            checks.append(rounds_check(v.name, base_rounds, cand_rounds, d, how))
            continue
        b = base_by_name[v.name]
        base_us = b.latency.samples_us if b.latency else []
        cand_us = v.latency.samples_us if v.latency else []
        checks.append(comparison_check(v.name, list(base_us), list(cand_us), d, "stored samples"))
    if not checks:
        checks.append(Check("baseline", "baseline", "error", "no variant was measured in both runs"))
    return checks


def evaluate(
    run: RunResult,
    config: GateConfig,
    baseline: RunResult | None = None,
    remeasured: Remeasured | None = None,
) -> Outcome:
    checks = budget_checks(run, config)
    if baseline is not None:
        checks += baseline_checks(run, baseline, config.defaults, remeasured)
    return Outcome(checks)
