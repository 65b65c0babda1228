"""The report's interactive charts: plotly.js figure specs computed here, drawn by plotly.js inlined in the page.

Every number a chart shows (the marks, which are on the frontier, which are over the accuracy budget, the
hover text) is computed in Python from the results and unit-tested; the page only hands the specs to
plotly.js. plotly.js comes from the `plotly` Python package's own copy (`plotly/package_data/plotly.min.js`),
found without importing plotly, and is inlined: the report opens from disk with no network. Strings
given to plotly are HTML-escaped, because plotly reads a small subset of HTML in labels.
"""

from __future__ import annotations

import html
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError
from mcbench.reports.decision import frontier, frontier_names, objective_of, profile_names
from mcbench.reports.formatting import finite, format_ms, format_rps, variant_colors
from mcbench.reports.load_view import peak_step
from mcbench.reports.quality import QualityMetric, measured, quality_metric, quality_of, shortfall, within_budget
from mcbench.reports.schema import RunResult, VariantResult

REJECTED_COLOR = "#b8b8b8"  # variants over the accuracy budget, greyed


class ReportError(UserError):
    """The report cannot be rendered as promised (its chart library is missing); the message says how to fix it."""


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The text of plotly.min.js from the installed `plotly` package; a ReportError where it is missing."""
    spec = importlib.util.find_spec("plotly")  # locates the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path.read_text(encoding="utf-8").replace("</script", "<\\/script")
    raise ReportError("cannot render the report's charts: plotly.min.js was not found (pip install plotly); "
                      "no report was written")


@dataclass(frozen=True)
class ChartSpec:
    """One chart: the plotly figure (data and layout), how many variant marks it should show, and a note."""

    id: str
    title: str
    figure: dict[str, Any]
    variants: list[str]  # the variants drawn, one mark (or curve) each
    note: str = ""
    caption: str = ""


def _esc(text: str) -> str:
    return html.escape(str(text), quote=False)


AXIS = {"zeroline": False, "gridcolor": "#e6e6e6"}


def _layout(x_title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    return {
        "xaxis": {"title": {"text": _esc(x_title)}, **AXIS, **extra.pop("xaxis", {})},
        "yaxis": {"title": {"text": _esc(y_title)}, **AXIS, **extra.pop("yaxis", {})},
        "margin": {"l": 64, "r": 16, "t": 16, "b": 64},
        "height": 400,
        "hovermode": "closest",
        "legend": {"orientation": "h", "y": -0.3, "yanchor": "top", "font": {"size": 11}},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        **extra,
    }


@dataclass(frozen=True)
class TradeoffPoint:
    name: str
    quality: float  # the metric's own value (an error stays an error)
    x: float
    in_budget: bool | None
    on_frontier: bool
    hover: str


def _budget_words(run: RunResult, v: VariantResult, metric: QualityMetric) -> str:
    ok = within_budget(run, v, metric)
    if ok is None:
        return "quality budget: n/a (no baseline figure)"
    worse = shortfall(run, v, metric)
    delta = "" if worse is None else (f"{-worse:+.2f} points vs baseline: " if metric.percent
                                      else f"{-worse:+.4f} vs baseline: ")
    return f"{delta}{'within' if ok else 'over'} the budget ({metric.budget_text()})"


def _y(metric: QualityMetric, value: float) -> float:
    """The chart's y: percent metrics in percent, others as they are."""
    return value * 100 if metric.percent else value


@dataclass(frozen=True)
class Axis:
    """A chart's x: the figure per variant and how it reads. `objective`: the run's objective, whose frontier the
    chart joins with a line (the diamonds mark that frontier on every chart: the table's mark)."""

    label: str
    figure: Any  # VariantResult -> float | None
    text: Any  # float -> str
    higher_is_better: bool
    objective: bool = False


def tradeoff_points(run: RunResult, axis: Axis) -> list[TradeoffPoint]:
    """One point per measured variant with a quality figure and an x figure; the frontier is the decision's."""
    metric, front = quality_metric(run), frontier_names(run)
    points = []
    for v in run.variants:
        quality, x = (quality_of(v, metric), axis.figure(v)) if measured(v) else (None, None)
        if quality is None or x is None:
            continue
        lines = [v.name, f"{metric.label}: {metric.format(quality)}", f"{axis.label}: {axis.text(x)}",
                 _budget_words(run, v, metric)] + ["on the Pareto frontier"] * (v.name in front)
        points.append(TradeoffPoint(v.name, quality, x, within_budget(run, v, metric), v.name in front,
                                    "<br>".join(_esc(line) for line in lines)))
    return points


def _marker(point: TradeoffPoint, color: str) -> dict[str, Any]:
    if point.in_budget is False:
        return {"color": REJECTED_COLOR, "size": 11, "opacity": 0.55, "symbol": "circle-open",
                "line": {"width": 2, "color": REJECTED_COLOR}}
    if point.on_frontier:
        return {"color": color, "size": 14, "symbol": "diamond", "line": {"width": 1.5, "color": "#222"}}
    return {"color": color, "size": 11, "symbol": "circle", "line": {"width": 1, "color": "#fff"}}


def frontier_lines(run: RunResult, metric: QualityMetric, axis: Axis) -> list[dict[str, Any]]:
    """The objective's frontier, one dotted line a profile, through the variants `reports.decision` puts on it."""
    lines = []
    for profile in profile_names(run):
        front = sorted(frontier(run, profile), key=lambda v: axis.figure(v))
        if len(front) > 1:
            name = f"Pareto frontier ({_esc(profile)})" if profile else "Pareto frontier"
            lines.append({"type": "scatter", "mode": "lines", "x": [axis.figure(v) for v in front],
                          "y": [_y(metric, quality_of(v, metric)) for v in front],
                          "line": {"color": "#444", "dash": "dot", "width": 1.5}, "hoverinfo": "skip",
                          "name": name, "showlegend": True, "meta": {"frontier": [v.name for v in front]}})
    return lines


def tradeoff_chart(run: RunResult, chart_id: str, title: str, axis: Axis, log_x: bool = False) -> ChartSpec:
    """Quality against one figure: a trace per variant (one point), the objective's frontier joined by a line.

    A lower-is-better metric (an error) is drawn on a reversed y axis, so up is better on every chart."""
    metric, colors = quality_metric(run), variant_colors(run)
    points = tradeoff_points(run, axis)
    data: list[dict[str, Any]] = frontier_lines(run, metric, axis) if axis.objective else []
    for p in points:
        label = _esc(p.name) + (" (over budget)" if p.in_budget is False else "")
        data.append({"type": "scatter", "mode": "markers", "x": [p.x], "y": [_y(metric, p.quality)], "name": label,
                     "text": [p.hover], "hoverinfo": "text", "marker": _marker(p, colors[p.name]),
                     "meta": {"variant": p.name}})
    drawn = {p.name for p in points}
    missing = [v.name for v in run.variants if v.name not in drawn]
    note = f"not shown (not measured, or no {metric.label} or {axis.label}): {', '.join(missing)}" if missing else ""
    xaxis = {"type": "log", "dtick": "D2"} if log_x and _wide(points) else {"rangemode": "tozero"}
    yaxis = ({"ticksuffix": "%"} if metric.percent else {}) | ({} if metric.higher_is_better
                                                               else {"autorange": "reversed"})
    layout = _layout(axis.label, f"{metric.label} (%)" if metric.percent else metric.label, xaxis=xaxis, yaxis=yaxis)
    return ChartSpec(chart_id, title, {"data": data, "layout": layout}, [p.name for p in points], note)


def _wide(points: Sequence[TradeoffPoint]) -> bool:
    xs = [p.x for p in points if p.x > 0]
    return bool(xs) and max(xs) / min(xs) >= 20


def _peak_rps(v: VariantResult) -> float | None:
    peak = peak_step(v.load)
    return finite(peak.throughput_rps) if peak else None


def _ms(x: float) -> str:
    return f"{format_ms(x)} ms"


def _rps(x: float) -> str:
    return f"{format_rps(x)} req/s"


CHART_IDS = {"p50": "pareto-latency", "p99": "pareto-latency", "throughput": "pareto-capacity",
             "cost": "pareto-cost"}


def objective_chart(run: RunResult) -> ChartSpec:
    """Quality against the objective's figure, with the frontier the recommendation is drawn from."""
    o = objective_of(run)
    axis = Axis(o.axis, o.figure, o.text, o.higher_is_better, objective=True)
    title = f"Quality vs {o.label} (the objective)"
    spec = tradeoff_chart(run, CHART_IDS[o.key], title, axis, log_x=o.key in ("p50", "p99"))
    return _with_caption(run, spec, "Up and to the right" if o.higher_is_better else "Up and to the left")


def pareto_latency_chart(run: RunResult) -> ChartSpec:
    """The objective's chart where it is a latency; else quality against in-process p50 (diamonds: the frontier)."""
    if objective_of(run).key in ("p50", "p99"):
        return objective_chart(run)
    axis = Axis("in-process p50 latency (ms)", lambda v: finite(v.latency.p50_ms) if v.latency else None, _ms, False)
    spec = tradeoff_chart(run, "pareto-latency", "Quality vs in-process p50 latency", axis, log_x=True)
    return _with_caption(run, spec, "Up and to the left")


def pareto_throughput_chart(run: RunResult) -> ChartSpec:
    """Quality against the peak HTTP throughput of the load sweeps (diamonds: the objective's frontier)."""
    axis = Axis("peak HTTP throughput (req/s)", _peak_rps, _rps, True)
    spec = tradeoff_chart(run, "pareto-throughput", "Quality vs peak HTTP throughput", axis)
    return _with_caption(run, spec, "Up and to the right")


def _with_caption(run: RunResult, spec: ChartSpec, where_better: str) -> ChartSpec:
    o = objective_of(run)
    frontier_words = ("the dotted line joins them" if any(t.get("mode") == "lines" for t in spec.figure["data"])
                      else f"they are placed by {o.label}, the run's objective, not by this chart's x")
    caption = (f"{where_better} is better. Diamonds are on the Pareto frontier of quality against {o.label} "
               f"({frontier_words}); grey open circles are over the quality budget. Hover a mark for its figures.")
    return ChartSpec(spec.id, spec.title, spec.figure, spec.variants, spec.note, caption)


def latency_budget_ms(run: RunResult) -> float | None:
    """The p99 budget the capacity figures use: the first variant's capacity record, else the run config's."""
    for v in run.variants:
        if v.capacity is not None and finite(v.capacity.budget_p99_ms) is not None:
            return float(v.capacity.budget_p99_ms)
    capacity = run.config.get("capacity")
    value = capacity.get("budget_p99_ms") if isinstance(capacity, dict) else run.config.get("budget_p99_ms")
    return finite(value)


PERCENTILES = (("p50", "p50_ms", "dot"), ("p90", "p90_ms", "dash"), ("p99", "p99_ms", "solid"))
OTHER_SWEEPS = (("open loop", "open_steps", "longdash"), ("batched, closed", "batched_steps", "dashdot"),
                ("batched, open", "batched_open_steps", "longdashdot"))


def load_curve_spec(run: RunResult) -> ChartSpec:
    """Latency percentiles (p50 dotted, p90 dashed, p99 solid) against achieved throughput, one colour per variant."""
    colors, data, drawn = variant_colors(run), [], []
    for v in run.variants:
        steps = sorted((s for s in (v.load.steps if v.load else []) if s.latency is not None
                        and finite(s.throughput_rps) is not None), key=lambda s: s.users)
        if not steps:
            continue
        drawn.append(v.name)
        for label, attr, dash in PERCENTILES:
            ys = [finite(getattr(s.latency, attr)) for s in steps]
            hover = [_esc(f"{v.name} {label}: {format_ms(y)} ms at {format_rps(s.throughput_rps)} req/s, "
                          f"{s.users} users, {s.failures} failures") for s, y in zip(steps, ys, strict=True)]
            data.append({"type": "scatter", "mode": "lines+markers" if label == "p99" else "lines",
                         "x": [s.throughput_rps for s in steps], "y": ys, "name": _esc(v.name),
                         "legendgroup": _esc(v.name), "showlegend": label == "p99", "text": hover,
                         "hoverinfo": "text", "line": {"color": colors[v.name], "dash": dash, "width": 2},
                         "marker": {"size": 8}, "meta": {"variant": v.name, "percentile": label}})
        for sweep, attr, dash in OTHER_SWEEPS:
            other = [s for s in (getattr(v.load, attr) if v.load else []) if s.latency is not None
                     and finite(s.throughput_rps) is not None]
            if not other:
                continue
            ys = [finite(s.latency.p99_ms) for s in other]
            hover = [_esc(f"{v.name} {sweep} p99: {format_ms(y)} ms at {format_rps(s.throughput_rps)} req/s "
                          f"(offered {format_rps(s.offered_rps) if s.offered_rps else f'{s.users} users'}), "
                          f"{s.failures} failures") for s, y in zip(other, ys, strict=True)]
            data.append({"type": "scatter", "mode": "lines+markers", "x": [s.throughput_rps for s in other], "y": ys,
                         "name": _esc(f"{v.name} ({sweep})"), "legendgroup": _esc(v.name), "showlegend": False,
                         "text": hover, "hoverinfo": "text",
                         "line": {"color": colors[v.name], "dash": dash, "width": 1.5},
                         "marker": {"size": 6, "symbol": "triangle-up"},
                         "meta": {"variant": v.name, "percentile": "p99", "sweep": sweep}})
    budget = latency_budget_ms(run)
    shapes, annotations = [], []
    if budget is not None and drawn:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": budget, "y1": budget,
                       "line": {"color": "#c0392b", "width": 2, "dash": "dashdot"}})
        annotations.append({"xref": "paper", "x": 1, "xanchor": "right", "yref": "y", "y": budget,
                            "yanchor": "bottom", "text": f"p99 budget {format_ms(budget)} ms", "showarrow": False,
                            "font": {"color": "#c0392b", "size": 11}})
    missing = [v.name for v in run.variants if v.name not in drawn]
    notes = []
    if missing:
        notes.append(f"no load figures: {', '.join(missing)}")
    if budget is None and drawn:
        notes.append("no p99 latency budget was recorded, so no budget line is drawn")
    layout = _layout("achieved throughput (req/s)", "HTTP latency (ms)", shapes=shapes, annotations=annotations,
                     xaxis={"rangemode": "tozero"}, yaxis={"rangemode": "tozero"})
    caption = ("One colour per variant, one point per load step. Closed loop: p99 solid with markers, p90 dashed, "
               "p50 dotted. Open loop (latency from each request's scheduled send) and runs with server batching: "
               "p99 only, triangles. Where a curve turns up, the server is saturated.")
    return ChartSpec("load-curves", "Latency percentiles vs achieved throughput (HTTP, Locust)",
                     {"data": data, "layout": layout}, drawn, "; ".join(notes), caption)


def charts(run: RunResult) -> list[ChartSpec]:
    """The objective's chart first, then quality against the other figure, then the load curves."""
    if objective_of(run).key in ("p50", "p99"):
        return [objective_chart(run), pareto_throughput_chart(run), load_curve_spec(run)]
    return [objective_chart(run), pareto_latency_chart(run), load_curve_spec(run)]


def charts_json(specs: Sequence[ChartSpec]) -> str:
    """The figures as JSON that is safe inside a <script type="application/json"> element: no <, > or & survive
    as themselves, so no value can close the element (a name like </script> stays inert data)."""
    text = json.dumps({s.id: s.figure for s in specs}, allow_nan=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


@dataclass(frozen=True)
class ChartsBlock:
    specs: list[ChartSpec]
    data_json: str
    library: str = field(repr=False)


def charts_block(run: RunResult) -> ChartsBlock:
    """The charts of the charts section, and (drawn in the serving section) the serving search's curves."""
    from mcbench.reports.serving_view import CHART_ID, serving_chart

    specs, serving = charts(run), serving_chart(run)
    drawn = specs + ([ChartSpec(CHART_ID, "Serving configurations", serving, [])] if serving else [])
    return ChartsBlock(specs, charts_json(drawn), plotly_js())
