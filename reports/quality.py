"""The run's primary quality metric: one figure per variant, its direction, and the budget it must meet.

Every decision reads it: the recommendation, the Pareto frontier, the terminal table, the capacity
section, `mcbench gate` and `mcbench compare`. Per task (the variants' `accuracy.task`):

| task | primary metric | default budget |
| --- | --- | --- |
| classification | top-1 with labels, else top-1 agreement with the baseline | at most 1 point below the baseline |
| embedding | mean cosine to the baseline's vectors | `cosine_mean>=0.99` |
| regression | relative error (to the labels, else to the baseline) | at most 1 point above the baseline's |
| fidelity (other outputs) | `worst_role`: the lowest figure over the outputs, each judged by its role | 1 point |
|  | (bench.roles, bench.metrics: argmax or decoded-sequence agreement, detection F1 and box IoU, | below the |
|  | score F1, cosine, one minus the error relative to each channel's scale); all are 1 where the | baseline |
|  | variant decides as the baseline does. Runs from before roles: argmax agreement, else the | |
|  | relative mean error | |

`--quality-budget` overrides: a number is points on the task's metric, `NAME>=X` / `NAME<=X` a bound on any
metric the run records (a user `--metric` included); the operator says whether higher or lower is better.
Standard library only: it runs where the report and the gate run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mcbench.base.errors import UserError
from mcbench.reports.schema import RunResult, VariantResult

DEFAULT_POINTS = 1.0
EMBEDDING_FLOOR = 0.99
PERCENT_KEYS = {"top1", "top5", "agreement", "argmax_agreement", "rel_error", "rel_mean_err", "rel_max_err",
                "worst_role", "step_agreement", "sequence_agreement", "score_recall", "score_precision", "score_f1",
                "det_recall", "det_precision", "det_f1", "box_kept", "channel_rel_err", "real_kept", "box_err"}
LOWER_IS_BETTER = {"rel_error", "rel_mean_err", "rel_max_err", "mae", "rmse", "channel_rel_err", "box_err"}
LABELS = {
    "top1": "top-1 accuracy", "agreement": "top-1 agreement with the baseline",
    "cosine_mean": "mean cosine to the baseline", "cosine_min": "worst cosine to the baseline",
    "rel_error": "relative error", "argmax_agreement": "argmax agreement with the baseline (worst output)",
    "rel_mean_err": "relative mean error to the baseline (worst output)",
    "worst_role": "agreement with the baseline of the worst output, judged by its role",
}
SHORT = {"top1": "top-1", "agreement": "agree", "cosine_mean": "cosine", "rel_error": "rel err",
         "argmax_agreement": "argmax", "rel_mean_err": "rel err", "worst_role": "worst role"}
_BOUND = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")


class QualityBudgetError(UserError):
    """A --quality-budget that cannot be read; the message shows the forms it takes."""


@dataclass(frozen=True)
class QualityMetric:
    """The figure that stands for quality: `key` in the accuracy record, which way is better, and the budget.

    `bound` False: the budget is points (percentage points of a percent metric, else the metric's units)
    the variant may be worse than the baseline. `bound` True: `budget` is a floor (higher is better) or a
    ceiling (lower is better) on the value itself.
    """

    key: str
    label: str
    higher_is_better: bool = True
    budget: float = DEFAULT_POINTS
    bound: bool = False

    @property
    def percent(self) -> bool:
        return figure_name(self.key) in PERCENT_KEYS

    @property
    def short(self) -> str:
        return SHORT.get(self.key, self.key)

    def budget_text(self) -> str:
        if self.bound:
            return f"{self.key} {'>=' if self.higher_is_better else '<='} {self.budget:g}"
        unit = "point" if self.percent else "unit"
        plural = "" if self.budget == 1 else "s"
        return f"at most {self.budget:g} {unit}{plural} {'below' if self.higher_is_better else 'above'} the baseline"

    def format(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return "n/a"
        return f"{value * 100:.{digits}f}%" if self.percent else f"{value:.{digits + 3}f}"


@dataclass(frozen=True)
class BudgetSpec:
    """What `--quality-budget` said: points on the task's metric, or a bound on a named one."""

    points: float | None = None
    key: str | None = None
    op: str | None = None
    value: float | None = None


def figure_name(key: str) -> str:
    """`output0.det_recall` -> `det_recall`: a per-output figure is read as its figure."""
    return key.rpartition(".")[2]


def parse_quality_budget(text: str) -> BudgetSpec:
    """`"2"` -> 2 points; `"cosine_mean>=0.99"` -> a floor; `"rel_error<=0.05"` -> a ceiling."""
    forms = "a number of points (e.g. 1.5) or METRIC>=VALUE / METRIC<=VALUE (e.g. cosine_mean>=0.99)"
    text = str(text).strip()
    try:
        points = float(text)
    except ValueError:
        match = _BOUND.match(text)
        if not match:
            raise QualityBudgetError(f"--quality-budget {text[:60]!r}: expected {forms}") from None
        try:
            value = float(match.group(3))
        except ValueError:
            raise QualityBudgetError(f"--quality-budget {text[:60]!r}: {match.group(3)!r} is not a number") from None
        if not math.isfinite(value):
            raise QualityBudgetError(f"--quality-budget {text[:60]!r}: the bound must be a finite number") from None
        return BudgetSpec(key=match.group(1), op=match.group(2), value=value)
    if not math.isfinite(points) or not 0 <= points <= 100:
        raise QualityBudgetError(f"--quality-budget {text[:60]!r}: points must be between 0 and 100")
    return BudgetSpec(points=points)


def run_task(run: RunResult) -> str:
    """The task the variants were scored for (resolved from 'auto' by the run), else the config's."""
    for v in run.variants:
        if v.accuracy is not None and v.accuracy.task:
            return v.accuracy.task
    return str(run.config.get("task") or "classification")


def quality_of(variant: VariantResult, metric: QualityMetric) -> float | None:
    acc = variant.accuracy
    if acc is None:
        return None
    value = getattr(acc, metric.key, None) if metric.key in ("top1", "agreement") else acc.metrics.get(metric.key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) else None


def measured(variant: VariantResult) -> bool:
    """A variant that may stand on the frontier: it ran and has an in-process latency."""
    return variant.status == "ok" and variant.latency is not None


def _any_has(run: RunResult, key: str) -> bool:
    probe = QualityMetric(key, key)
    return any(quality_of(v, probe) is not None for v in run.variants if measured(v))


def task_metric(run: RunResult) -> QualityMetric:
    """The task's own metric and direction, before any budget."""
    task = run_task(run)
    if task == "embedding":
        return QualityMetric("cosine_mean", LABELS["cosine_mean"], True, EMBEDDING_FLOOR, bound=True)
    if task == "regression":
        return QualityMetric("rel_error", LABELS["rel_error"], False)
    if task == "fidelity":
        key = next(k for k in ("worst_role", "argmax_agreement") if _any_has(run, k)) if any(
            _any_has(run, k) for k in ("worst_role", "argmax_agreement")) else "rel_mean_err"
        return QualityMetric(key, LABELS[key], key not in LOWER_IS_BETTER)
    key = "top1" if _any_has(run, "top1") else "agreement"
    return QualityMetric(key, LABELS[key], True)


def quality_metric(run: RunResult) -> QualityMetric:
    """The run's primary metric with its budget: `quality_budget` from the config, else the task's default.

    One metric for the whole run, never a per-variant mix.
    """
    base = task_metric(run)
    text = run.config.get("quality_budget")
    spec = parse_quality_budget(text) if text not in (None, "") else None
    if spec is not None and spec.key is not None:
        return QualityMetric(spec.key, LABELS.get(spec.key, spec.key), spec.op == ">=", spec.value, bound=True)
    points = spec.points if spec is not None else None if base.bound else _legacy_points(run)
    if points is None:
        return base
    return QualityMetric(base.key, base.label, base.higher_is_better, points, bound=False)


def _legacy_points(run: RunResult) -> float | None:
    """`accuracy_budget` (points), which runs recorded before --quality-budget, where it is not the default."""
    value = run.config.get("accuracy_budget")
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0 and value != DEFAULT_POINTS:
        return float(value)
    return None


def baseline_quality(run: RunResult, metric: QualityMetric) -> float | None:
    for v in run.variants:
        if v.name == run.baseline and measured(v):
            return quality_of(v, metric)
    return None


def shortfall(run: RunResult, variant: VariantResult, metric: QualityMetric | None = None) -> float | None:
    """How much worse than the baseline the variant is, in points for a percent metric (negative: better)."""
    metric = metric or quality_metric(run)
    base, value = baseline_quality(run, metric), quality_of(variant, metric)
    if base is None or value is None:
        return None
    scale = 100 if metric.percent else 1
    worse = (base - value) if metric.higher_is_better else (value - base)
    return round(worse * scale, 9)  # rounded so 97.5% - 97.5% is 0, not 1e-14


def within_budget(run: RunResult, variant: VariantResult, metric: QualityMetric | None = None) -> bool | None:
    """True within the quality budget, False over it, None where it cannot be told."""
    metric = metric or quality_metric(run)
    if metric.bound:
        value = quality_of(variant, metric)
        if value is None:
            return None
        return value >= metric.budget - 1e-12 if metric.higher_is_better else value <= metric.budget + 1e-12
    worse = shortfall(run, variant, metric)
    return None if worse is None else worse <= metric.budget + 1e-9


GOVERNING = {"argmax_agreement", "sequence_agreement", "score_f1", "det_f1", "box_kept", "cosine_mean", "real_kept"}


def worst_figure(variant: VariantResult) -> str | None:
    """The per-output figure that sets `worst_role` (`output0.det_f1`), or None where the variant has none."""
    metrics = variant.accuracy.metrics if variant.accuracy is not None else {}
    figures = {k: v for k, v in metrics.items() if "." in k and figure_name(k) in GOVERNING
               and isinstance(v, int | float) and math.isfinite(v)}
    return min(figures, key=figures.__getitem__) if figures else None


def over_budget_text(run: RunResult, variant: VariantResult, metric: QualityMetric | None = None) -> str:
    """'cosine_mean 0.4412, budget cosine_mean >= 0.99': the figure and the budget it misses or meets; for
    `worst_role`, the output's figure that set it ('worst_role 0.0% (output0.det_f1), budget ...')."""
    metric = metric or quality_metric(run)
    which = worst_figure(variant) if metric.key == "worst_role" else None
    figure = metric.format(quality_of(variant, metric)) + (f" ({which})" if which else "")
    return f"{metric.key} {figure}, budget {metric.budget_text()}"


def quality_text(run: RunResult, variant: VariantResult) -> str:
    """The variant's primary figure with its metric's name, e.g. 'cosine 0.9921'."""
    metric = quality_metric(run)
    return f"{metric.short} {metric.format(quality_of(variant, metric))}"


def within_quality_budget(run: RunResult, variant: VariantResult) -> bool | None:
    return within_budget(run, variant) if measured(variant) else None
