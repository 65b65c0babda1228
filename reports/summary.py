"""The summary table: one row a variant, every figure formatted, its status read against the quality budget.

The HTML template and the terminal table only lay these values out (style principle 12): every figure and
comparison is computed here, where it is unit-tested. Standard library only, like the schema, so a report
renders on a box with no model runtime.
The frontier mark comes from `reports.decision`, as the charts' and the recommendation's do.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcbench.base.text import first_line
from mcbench.reports.decision import frontier_names
from mcbench.reports.formatting import (
    ERROR_CHARS,
    Cell,
    format_count,
    format_diff,
    format_ms,
    format_percent,
    format_rps,
    format_size,
    format_speedup,
    number_cell,
    recipe_text,
    variant_colors,
)
from mcbench.reports.load_view import all_steps, peak_step
from mcbench.reports.quality import QualityMetric, measured, quality_metric, quality_of, within_budget
from mcbench.reports.schema import RunResult, VariantResult
from mcbench.reports.speedup import baseline_p50_ms, speedup


@dataclass(frozen=True)
class SummaryRow:
    name: str
    color: str
    status: str
    error: str  # first line of the error; the full text is in the failed-variants section
    runtime: str
    recipe: str
    is_baseline: bool
    on_frontier: bool
    accuracy: Cell
    agreement: Cell
    max_abs_diff: Cell
    p50: Cell
    p90: Cell
    p99: Cell
    samples: Cell
    speedup: Cell
    size: Cell
    peak_rps: Cell
    peak_users: Cell
    peak_p99: Cell
    http_failures: Cell
    quality: Cell = Cell("n/a")  # the run's primary quality metric
    in_budget: bool | None = None  # within the quality budget; None where it cannot be told

    @property
    def verdict(self) -> str:
        """The status a person reads: a variant that ran but misses the quality budget is "over budget"."""
        return "over budget" if self.status == "ok" and self.in_budget is False else self.status


def summary_row(variant: VariantResult, baseline_p50: float | None, frontier: set[str], color: str,
                baseline: str | None, metric: QualityMetric | None = None, in_budget: bool | None = None) -> SummaryRow:
    acc, lat, peak = variant.accuracy, variant.latency, peak_step(variant.load)
    failures = sum(s.failures for s in all_steps(variant.load)) if variant.load else None
    return SummaryRow(
        name=variant.name,
        color=color,
        status=variant.status,
        error=first_line(variant.error, ERROR_CHARS),
        runtime=variant.runtime,
        recipe=recipe_text(variant.recipe),
        is_baseline=variant.name == baseline,
        on_frontier=variant.name in frontier,
        accuracy=number_cell(acc.top1 if acc else None, format_percent),
        agreement=number_cell(acc.agreement if acc else None, format_percent),
        max_abs_diff=number_cell(acc.max_abs_diff if acc else None, format_diff),
        p50=number_cell(lat.p50_ms if lat else None, format_ms),
        p90=number_cell(lat.p90_ms if lat else None, format_ms),
        p99=number_cell(lat.p99_ms if lat else None, format_ms),
        samples=number_cell(lat.count if lat else None, format_count),
        speedup=number_cell(speedup(baseline_p50, lat), format_speedup),
        size=number_cell(variant.artifact.get("size_bytes"), format_size),
        peak_rps=number_cell(peak.throughput_rps if peak else None, format_rps),
        peak_users=number_cell(peak.users if peak else None, format_count),
        peak_p99=number_cell(peak.latency.p99_ms if peak and peak.latency else None, format_ms),
        http_failures=number_cell(failures, format_count),
        quality=number_cell(quality_of(variant, metric) if metric else None,
                            metric.format if metric else format_percent),
        in_budget=in_budget,
    )


def summary_rows(run: RunResult) -> list[SummaryRow]:
    """One row per variant, in run order, with every figure formatted and a sort key beside it."""
    base, frontier, colors, metric = baseline_p50_ms(run), frontier_names(run), variant_colors(run), quality_metric(run)
    return [summary_row(v, base, frontier, colors[v.name], run.baseline, metric,
                        within_budget(run, v, metric) if measured(v) else None) for v in run.variants]
