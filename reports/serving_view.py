"""The report's serving section: per finalist, every server configuration tried, the best, and its curves.

Reads only the results schema (ServingSearch), like the rest of `reports`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcbench.reports.formatting import finite, format_ms, format_rps
from mcbench.reports.schema import RunResult, ServingSearch, ServingTrial, VariantResult

CHART_ID = "serving-curves"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


@dataclass(frozen=True)
class ServingRow:
    label: str
    steps: str  # users: req/s @ p99 ms, in order
    rps_at_slo: str
    outcome: str
    stopped: str
    best: bool


@dataclass(frozen=True)
class ServingTable:
    variant: str
    profile: str
    summary: str  # the planner's answer in one sentence
    rows: list[ServingRow]


def steps_text(trial: ServingTrial) -> str:
    return "; ".join(f"{s.users}u {format_rps(s.throughput_rps)}/s p99 {format_ms(s.p99_ms)}" for s in trial.steps)


def summary_text(s: ServingSearch) -> str:
    """The best configuration, its figure against the default's, and what the target load takes."""
    if s.best is None:
        return f"No configuration held the p99 SLO of {s.slo_p99_ms:g} ms."
    text = (f"Best: {s.best}, {format_rps(s.best_rps)} req/s with p99 within {s.slo_p99_ms:g} ms (default "
            f"configuration: {format_rps(s.default_rps) if s.default_rps is not None else 'none held it'}).")
    if s.replicas is not None:
        text += f" {format_rps(s.target_rps)} req/s take {s.replicas} replica{'s' * (s.replicas != 1)}"
        text += f", {s.cost_per_hour:.2f} an hour." if s.cost_per_hour is not None else "."
    if s.cost_per_million is not None:
        text += f" {s.cost_per_million:.4f} per million requests."
    tried = sum(t.outcome != "untried" for t in s.trials)
    return text + f" {tried} of {len(s.trials)} configurations tried in {s.elapsed_s:.0f} s."


def serving_tables(run: RunResult) -> list[ServingTable]:
    out = []
    for v in run.variants:
        if v.serving is None:
            continue
        rows = [ServingRow(t.label, steps_text(t), format_rps(t.rps_at_slo) if t.rps_at_slo is not None else "-",
                           t.outcome, t.stopped, t.label == v.serving.best) for t in v.serving.trials]
        out.append(ServingTable(v.name, v.profile or "this machine", summary_text(v.serving), rows))
    return out


def _curve(v: VariantResult, trial: ServingTrial, color: str, dash: str) -> dict:
    steps = [s for s in trial.steps if s.p99_ms is not None and finite(s.throughput_rps) is not None]
    hover = [f"{v.name} {trial.label}: p99 {format_ms(s.p99_ms)} ms at {format_rps(s.throughput_rps)} req/s, "
             f"{s.users} users" for s in steps]
    return {"type": "scatter", "mode": "lines+markers", "x": [s.throughput_rps for s in steps],
            "y": [s.p99_ms for s in steps], "name": f"{v.name} · {trial.label}", "text": hover, "hoverinfo": "text",
            "line": {"color": color, "dash": dash, "width": 2}, "meta": {"variant": v.name, "config": trial.label}}


def serving_chart(run: RunResult) -> dict | None:
    """p99 against throughput, one curve per configuration tried (one dash style per finalist), the SLO a line."""
    data, slo = [], None
    finalists = [v for v in run.variants if v.serving is not None]
    for index, v in enumerate(finalists):
        slo = v.serving.slo_p99_ms
        dash = ("solid", "dash", "dot")[index % 3]
        data += [_curve(v, t, PALETTE[i % len(PALETTE)], dash)
                 for i, t in enumerate(v.serving.trials) if t.steps]
    if not data:
        return None
    line = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": slo, "y1": slo,
            "line": {"color": "#c0392b", "width": 2, "dash": "dashdot"}}
    layout = {"xaxis": {"title": {"text": "throughput (req/s)"}, "rangemode": "tozero"},
              "yaxis": {"title": {"text": "p99 (ms)"}, "rangemode": "tozero"}, "shapes": [line],
              "margin": {"t": 30}, "legend": {"orientation": "h"}}
    return {"data": data, "layout": layout}
