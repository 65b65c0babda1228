"""The run's summary as a plain-text table for the terminal, built from the same rows as the HTML page
(reports.summary)."""

from __future__ import annotations

from collections.abc import Callable

from mcbench.reports.decide import recommendations
from mcbench.reports.decision import objective_of
from mcbench.reports.formatting import format_speedup
from mcbench.reports.quality import quality_metric
from mcbench.reports.schema import RunResult
from mcbench.reports.sections import confirmation_lines, search_rows, search_summary
from mcbench.reports.serving_view import serving_tables
from mcbench.reports.summary import SummaryRow, summary_rows


def notes(row: SummaryRow) -> str:
    """The baseline and the Pareto-frontier variants, marked in words (a terminal may not show symbols)."""
    return ", ".join(["baseline"] * row.is_baseline + ["frontier"] * row.on_frontier)


# (heading, right-aligned, the row's text); numbers are right-aligned so their digits line up.
COLUMNS: tuple[tuple[str, bool, Callable[[SummaryRow], str]], ...] = (
    ("variant", False, lambda r: r.name),
    ("status", False, lambda r: r.verdict),
    ("quality", True, lambda r: r.quality.text),
    ("p50 ms", True, lambda r: r.p50.text),
    ("p99 ms", True, lambda r: r.p99.text),
    ("speedup", True, lambda r: r.speedup.text),
    ("rps@peak", True, lambda r: r.peak_rps.text),
    ("size", True, lambda r: r.size.text),
    ("notes", False, notes),
)


def decision_line(run: RunResult) -> str:
    """'objective: in-process p50 latency (p50); ship ort-int8' (per profile where the run named several)."""
    picks = []
    for rec in recommendations(run):
        what = {"ship": "ship", "nearest-miss": "nearest miss"}.get(rec.kind, "no recommendation")
        picks.append(f"{rec.profile + ': ' if rec.profile else ''}{what}{' ' + rec.variant if rec.variant else ''}"
                     f"{confirmed_text(run, rec.variant) if rec.kind == 'ship' else ''}")
    o = objective_of(run)
    return f"objective: {o.label} ({o.key}); {'; '.join(picks)}"


def confirmed_text(run: RunResult, name: str | None) -> str:
    """The pick's speedup from the confirmation round, e.g. ' (5.46× the baseline's speed side by side, 95% CI
    5.37×-5.50×)'; '' where the round did not pick `name`."""
    c = run.confirmation
    r = next((r for r in c.ratios if r.name == name), None) if c is not None and c.pick == name else None
    if r is None:
        return ""
    return (f" ({format_speedup(1 / r.ratio)} the baseline's speed side by side, {c.confidence:.0%} CI "
            f"{format_speedup(1 / r.high)}-{format_speedup(1 / r.low)})")


def aligned(cells: list[str], widths: list[int], right: list[bool]) -> str:
    parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
    return "  ".join(parts).rstrip()


def summary_table(run: RunResult) -> str:
    """A header, a rule, then one line per variant: the figures an engineer checks before opening the report;
    the quality column is the run's primary metric, named in its header, with the budget under the table."""
    metric = quality_metric(run)
    heads = [metric.short if head == "quality" else head for head, _, _ in COLUMNS]
    right = [r for _, r, _ in COLUMNS]
    body = [[get(row) for _, _, get in COLUMNS] for row in summary_rows(run)]
    widths = [max(len(line[i]) for line in [heads, *body]) for i in range(len(COLUMNS))]
    rule = "  ".join("-" * w for w in widths).rstrip()
    lines = [aligned(heads, widths, right), rule, *(aligned(line, widths, right) for line in body)]
    if run.variants:
        lines.append(decision_line(run))
        lines.append(f"quality: {metric.label}; budget {metric.budget_text()}")
        lines += confirmation_lines(run)
    if search_summary(run):
        lines += ["", search_summary(run)]
        lines += [f"  {row.name:<{widths[0]}}  {row.stage}: {row.why}" for row in search_rows(run)]
    for table in serving_tables(run):
        lines += ["", f"Serving search for {table.variant} ({table.profile}): {table.summary}"]
        lines += [f"  {row.label:<28} {row.rps_at_slo:>8}  {row.outcome:<7} {row.stopped}" for row in table.rows]
    return "\n".join(lines)
