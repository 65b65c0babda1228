"""What the report shows, computed from a RunResult: formatted rows, the Pareto frontier, chart geometry.

The HTML template and the terminal table only lay these values out (style principle 12): every
figure, comparison, frontier mark and pixel coordinate is computed here, where it is unit-tested.
Standard library only, like the schema, so a report renders on a box with no model runtime.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reports.schema import LatencyStats, LoadResult, LoadStep, RunResult, VariantResult

NA = "n/a"
# Tableau 10, a palette made for telling categories apart; a variant keeps its colour in every chart.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)


# ---------------------------------------------------------------- formatting


def finite(value: Any) -> float | None:
    """The value as a float, or None where it is missing, not a number, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def format_percent(fraction: Any, digits: int = 1) -> str:
    value = finite(fraction)
    return NA if value is None else f"{value * 100:.{digits}f}%"


def format_ms(value: Any) -> str:
    """Milliseconds with about three significant digits, down to the microsecond the samples keep."""
    ms = finite(value)
    if ms is None:
        return NA
    digits = 3 if abs(ms) < 1 else 2 if abs(ms) < 10 else 1 if abs(ms) < 100 else 0
    return f"{ms:,.{digits}f}"


def format_rps(value: Any) -> str:
    rps = finite(value)
    if rps is None:
        return NA
    return f"{rps:,.0f}" if abs(rps) >= 100 else f"{rps:.1f}"


def format_speedup(value: Any) -> str:
    """Two decimals; two significant digits below 0.1, so a 700× slowdown does not read "0.00×"."""
    ratio = finite(value)
    if ratio is None:
        return NA
    return f"{ratio:.2f}×" if abs(ratio) >= 0.1 else f"{ratio:.2g}×"


def format_size(size_bytes: Any) -> str:
    """Binary units, named as such (KiB, MiB), so a size is never off by 2.4%."""
    size = finite(size_bytes)
    if size is None:
        return NA
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(size) >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def format_diff(value: Any) -> str:
    """An output difference: three significant digits, scientific notation where small."""
    diff = finite(value)
    return NA if diff is None else f"{diff:.3g}"


def format_seconds(value: Any) -> str:
    seconds = finite(value)
    return NA if seconds is None else f"{seconds:.1f}"


def format_count(value: Any) -> str:
    count = finite(value)
    return NA if count is None else f"{count:,.0f}"


def json_text(value: Any) -> str:
    """Compact JSON for a nested value, NaN and infinities as null (they are not JSON)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        return [clean(x) for x in v] if isinstance(v, list | tuple) else v

    return json.dumps(clean(value), default=str, allow_nan=False, separators=(", ", ": "))


def format_value(value: Any) -> str:
    """Any settings or environment value as one line of text; NaN and None read "n/a"."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return NA if finite(value) is None else f"{value:g}"
    if isinstance(value, list | tuple):
        if all(not isinstance(v, dict | list | tuple) for v in value):
            return ", ".join(format_value(v) for v in value) if value else "(none)"
        return json_text(value)
    if isinstance(value, Mapping):
        return json_text(value) if value else "(none)"
    return str(value)


def format_created(created: str) -> str:
    """An ISO timestamp as "YYYY-MM-DD HH:MM:SS UTC" style text; anything unparsable is shown as recorded."""
    try:
        stamp = datetime.fromisoformat(created)
    except (TypeError, ValueError):
        return str(created)
    zone = stamp.strftime("%Z") if stamp.tzinfo is not None else ""
    return f"{stamp:%Y-%m-%d %H:%M:%S} {zone}".strip()


@dataclass(frozen=True)
class Cell:
    """A table cell: the text shown and the key the table sorts by ("" where there is no figure)."""

    text: str
    sort: str = ""


def number_cell(value: Any, formatter: Callable[[Any], str]) -> Cell:
    """The formatted figure, sorted by its raw value; "n/a" sorts last."""
    number = finite(value)
    return Cell(formatter(value), "" if number is None else repr(number))


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str


def flattened_items(data: Mapping[str, Any], prefix: str = "") -> list[KeyValue]:
    """Nested mappings as dotted keys ("libraries.torch"), so every environment value gets its own row."""
    rows: list[KeyValue] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(flattened_items(value, f"{name}."))
        else:
            rows.append(KeyValue(name, format_value(value)))
    return rows


# ---------------------------------------------------------------- quality and the Pareto frontier


@dataclass(frozen=True)
class QualityMetric:
    """Which figure stands for "accuracy" on the frontier: top-1 on labels, else agreement with the baseline."""

    key: str  # "top1" | "agreement"
    label: str


TOP1 = QualityMetric("top1", "top-1 accuracy")
AGREEMENT = QualityMetric("agreement", "agreement with baseline")


def quality_of(variant: VariantResult, metric: QualityMetric) -> float | None:
    if variant.accuracy is None:
        return None
    return finite(getattr(variant.accuracy, metric.key))


def measured(variant: VariantResult) -> bool:
    """A variant that may stand on the frontier: it ran and has an in-process latency."""
    return variant.status == "ok" and variant.latency is not None


def quality_metric(run: RunResult) -> QualityMetric:
    """Top-1 where any measured variant has it (a labelled dataset), else fidelity to the baseline.

    One metric for the whole run, never a per-variant mix: accuracy and agreement are not comparable.
    """
    has_top1 = any(quality_of(v, TOP1) is not None for v in run.variants if measured(v))
    return TOP1 if has_top1 else AGREEMENT


@dataclass(frozen=True)
class ParetoPoint:
    name: str
    quality: float  # higher is better
    latency_ms: float  # lower is better


def pareto_frontier(points: Iterable[ParetoPoint]) -> set[str]:
    """Names of the points no other point dominates (at least as good on both, better on one).

    Identical points do not dominate each other, so ties are all on the frontier.
    """
    pts = list(points)

    def dominated(p: ParetoPoint) -> bool:
        return any(
            q.quality >= p.quality and q.latency_ms <= p.latency_ms
            and (q.quality > p.quality or q.latency_ms < p.latency_ms)
            for q in pts
        )

    return {p.name for p in pts if not dominated(p)}


def pareto_points(run: RunResult, metric: QualityMetric | None = None) -> list[ParetoPoint]:
    """One point per measured variant that has both the quality figure and a finite in-process p99."""
    metric = metric or quality_metric(run)
    points = []
    for v in run.variants:
        quality = quality_of(v, metric) if measured(v) else None
        p99 = finite(v.latency.p99_ms) if v.latency is not None else None
        if quality is not None and p99 is not None:
            points.append(ParetoPoint(v.name, quality, p99))
    return points


def frontier_names(run: RunResult) -> set[str]:
    return pareto_frontier(pareto_points(run))


# ---------------------------------------------------------------- summary table


def baseline_p50_ms(run: RunResult) -> float | None:
    """The baseline's in-process p50, the denominator of every speedup; None where it did not run."""
    for v in run.variants:
        if v.name == run.baseline and measured(v) and v.latency is not None:
            return finite(v.latency.p50_ms)
    return None


def speedup(baseline_p50: float | None, latency: LatencyStats | None) -> float | None:
    """Baseline p50 / variant p50: above 1 is faster than the baseline."""
    p50 = finite(latency.p50_ms) if latency is not None else None
    if baseline_p50 is None or p50 is None or p50 <= 0:
        return None
    return baseline_p50 / p50


def peak_step(load: LoadResult | None) -> LoadStep | None:
    """The load step with the highest achieved throughput (the first such, on a tie)."""
    steps = [s for s in (load.steps if load else []) if finite(s.throughput_rps) is not None]
    return max(steps, key=lambda s: s.throughput_rps, default=None)


def first_line(text: str | None, limit: int = 120) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


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


def recipe_text(recipe: Sequence[str]) -> str:
    return " → ".join(recipe) if recipe else "(none)"


def variant_colors(run: RunResult) -> dict[str, str]:
    return {v.name: PALETTE[i % len(PALETTE)] for i, v in enumerate(run.variants)}


def summary_row(variant: VariantResult, baseline_p50: float | None, frontier: set[str], color: str,
                baseline: str | None) -> SummaryRow:
    acc, lat, peak = variant.accuracy, variant.latency, peak_step(variant.load)
    failures = sum(s.failures for s in variant.load.steps) if variant.load else None
    return SummaryRow(
        name=variant.name,
        color=color,
        status=variant.status,
        error=first_line(variant.error),
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
    )


def summary_rows(run: RunResult) -> list[SummaryRow]:
    """One row per variant, in run order, with every figure formatted and a sort key beside it."""
    base, frontier, colors = baseline_p50_ms(run), frontier_names(run), variant_colors(run)
    return [summary_row(v, base, frontier, colors[v.name], run.baseline) for v in run.variants]


# ---------------------------------------------------------------- load tables


@dataclass(frozen=True)
class LoadStepRow:
    users: Cell
    duration_s: Cell
    requests: Cell
    failures: Cell
    rps: Cell
    p50: Cell
    p90: Cell
    p99: Cell
    samples: Cell
    errors: str
    is_peak: bool


@dataclass(frozen=True)
class LoadTable:
    name: str
    color: str
    rows: list[LoadStepRow]
    facts: list[KeyValue]


def load_step_row(step: LoadStep, is_peak: bool) -> LoadStepRow:
    lat = step.latency
    errors = "; ".join(f"{count}× {message}" for message, count in step.errors.items())
    return LoadStepRow(
        users=number_cell(step.users, format_count),
        duration_s=number_cell(step.duration_s, format_seconds),
        requests=number_cell(step.requests, format_count),
        failures=number_cell(step.failures, format_count),
        rps=number_cell(step.throughput_rps, format_rps),
        p50=number_cell(lat.p50_ms if lat else None, format_ms),
        p90=number_cell(lat.p90_ms if lat else None, format_ms),
        p99=number_cell(lat.p99_ms if lat else None, format_ms),
        samples=number_cell(lat.count if lat else None, format_count),
        errors=errors,
        is_peak=is_peak,
    )


def cores_text(cores: Sequence[int]) -> str:
    return ", ".join(str(c) for c in cores) if cores else NA


def load_facts(load: LoadResult) -> list[KeyValue]:
    """How the load test was set up: the core split decides how far its figures can be trusted."""
    return [
        KeyValue("server cores", cores_text(load.server_cores)),
        KeyValue("load generator cores", cores_text(load.loadgen_cores)),
        KeyValue("cores shared", "yes: HTTP figures are pessimistic" if load.cores_shared else "no"),
        KeyValue("server threads", format_count(load.server_threads)),
        KeyValue("Locust requests / failures",
                 f"{format_count(load.locust_total_requests)} / {format_count(load.locust_total_failures)}"),
        KeyValue("load generator CPU", NA if finite(load.loadgen_cpu_percent) is None
                 else f"{load.loadgen_cpu_percent:.0f}%"),
    ]


def load_tables(run: RunResult) -> list[LoadTable]:
    """One table per variant that has a load result, one row per concurrency step, the peak step marked."""
    colors, tables = variant_colors(run), []
    for v in run.variants:
        if v.load is None:
            continue
        peak = peak_step(v.load)
        rows = [load_step_row(s, s is peak) for s in v.load.steps]
        tables.append(LoadTable(v.name, colors[v.name], rows, load_facts(v.load)))
    return tables


# ---------------------------------------------------------------- failed variants, details, warnings


@dataclass(frozen=True)
class FailedVariant:
    name: str
    status: str
    runtime: str
    recipe: str
    error: str


def failed_variants(run: RunResult) -> list[FailedVariant]:
    """Every variant that did not finish ("failed" or "skipped"), with its full error text."""
    return [
        FailedVariant(v.name, v.status, v.runtime, recipe_text(v.recipe), v.error or "(no error recorded)")
        for v in run.variants if v.status != "ok"
    ]


@dataclass(frozen=True)
class PassRow:
    name: str
    params: list[KeyValue]


@dataclass(frozen=True)
class VariantDetail:
    name: str
    color: str
    status: str
    runtime: str
    recipe: str
    passes: list[PassRow]
    artifact: list[KeyValue]
    settings: list[KeyValue]
    latency: list[KeyValue]
    accuracy: list[KeyValue]
    warnings: list[str]
    error: str


def pass_rows(passes: Any) -> list[PassRow]:
    """Each applied pass with the parameters it recorded (everything in its record but its name)."""
    rows = []
    for record in passes if isinstance(passes, list) else []:
        if isinstance(record, Mapping):
            params = [KeyValue(str(k), format_value(v)) for k, v in record.items() if k != "pass"]
            rows.append(PassRow(str(record.get("pass", "(unnamed)")), params))
        else:
            rows.append(PassRow(str(record), []))
    return rows


def artifact_items(artifact: Mapping[str, Any]) -> list[KeyValue]:
    """The artifact's identity: sha256 and size first, then whatever else was recorded (passes shown apart)."""
    size = artifact.get("size_bytes")
    items = [KeyValue("sha256", format_value(artifact.get("sha256"))),
             KeyValue("size", f"{format_size(size)} ({format_count(size)} B)")]
    rest = [KeyValue(k, inputs_text(v) if k == "inputs" else format_value(v))
            for k, v in artifact.items() if k not in ("sha256", "size_bytes", "passes")]
    return items + rest if artifact else []


def latency_items(lat: LatencyStats | None) -> list[KeyValue]:
    if lat is None:
        return []
    return [
        KeyValue("samples", format_count(lat.count)),
        KeyValue("mean ± stdev ms", f"{format_ms(lat.mean_ms)} ± {format_ms(lat.stdev_ms)}"),
        KeyValue("min / max ms", f"{format_ms(lat.min_ms)} / {format_ms(lat.max_ms)}"),
        KeyValue("coefficient of variation", format_percent(lat.cv if finite(lat.mean_ms) else None)),
    ]


def accuracy_items(variant: VariantResult) -> list[KeyValue]:
    acc = variant.accuracy
    if acc is None:
        return []
    return [
        KeyValue("dataset", acc.dataset or "(none: generated inputs)"),
        KeyValue("samples", format_count(acc.samples)),
        KeyValue("top-1 accuracy", format_percent(acc.top1)),
        KeyValue("agreement with baseline", format_percent(acc.agreement)),
        KeyValue("max / mean abs diff", f"{format_diff(acc.max_abs_diff)} / {format_diff(acc.mean_abs_diff)}"),
    ]


def variant_details(run: RunResult) -> list[VariantDetail]:
    colors = variant_colors(run)
    return [
        VariantDetail(
            name=v.name, color=colors[v.name], status=v.status, runtime=v.runtime, recipe=recipe_text(v.recipe),
            passes=pass_rows(v.artifact.get("passes")), artifact=artifact_items(v.artifact),
            settings=flattened_items(v.settings), latency=latency_items(v.latency), accuracy=accuracy_items(v),
            warnings=list(v.warnings), error=v.error or "",
        )
        for v in run.variants
    ]


@dataclass(frozen=True)
class WarningItem:
    scope: str  # "run" or a variant's name
    text: str


def derived_warnings(variant: VariantResult) -> list[str]:
    """Caveats visible in the data that the run did not already state in words."""
    found, said = [], " ".join(variant.warnings).lower()
    load = variant.load
    if load is not None and load.cores_shared and "shar" not in said:
        found.append("server and load generator share CPU cores: HTTP figures are pessimistic")
    failures = sum(s.failures for s in load.steps) if load else 0
    if load is not None and failures > 0:
        requests = sum(s.requests for s in load.steps)
        found.append(f"{failures:,} of {requests:,} HTTP requests failed under load")
    return found


def all_warnings(run: RunResult) -> list[WarningItem]:
    """Run-level warnings, then each variant's (recorded and derived), in run order."""
    items = [WarningItem("run", w) for w in run.warnings]
    if run.baseline and baseline_p50_ms(run) is None:
        items.append(WarningItem("run", f"baseline {run.baseline!r} has no in-process latency: speedups are n/a"))
    for v in run.variants:
        items += [WarningItem(v.name, w) for w in [*v.warnings, *derived_warnings(v)]]
    return items


# ---------------------------------------------------------------- chart geometry


@dataclass(frozen=True)
class Tick:
    pos: float  # pixels along the axis
    label: str


@dataclass(frozen=True)
class Axis:
    label: str
    ticks: list[Tick]


@dataclass(frozen=True)
class Frame:
    """An SVG canvas and its plot area, in pixels; y grows downwards as in SVG."""

    width: int = 560
    height: int = 340
    left: int = 64
    right: int = 540
    top: int = 16
    bottom: int = 288

    @property
    def plot_width(self) -> int:
        return self.right - self.left

    @property
    def plot_height(self) -> int:
        return self.bottom - self.top

    @property
    def x_tick_label_y(self) -> int:
        return self.bottom + 18

    @property
    def y_tick_label_x(self) -> int:
        return self.left - 8

    @property
    def x_label_x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def x_label_y(self) -> int:
        return self.height - 8

    @property
    def y_label_transform(self) -> str:
        """The y-axis title, turned to read upwards along the axis."""
        return f"translate(16 {(self.top + self.bottom) / 2}) rotate(-90)"


@dataclass(frozen=True)
class Scale:
    """A map from data values in [lo, hi] to pixels in [px_lo, px_hi], linear or logarithmic."""

    lo: float
    hi: float
    px_lo: float
    px_hi: float
    log: bool = False

    def _t(self, value: float) -> float:
        return math.log10(value) if self.log else value

    def px(self, value: float) -> float:
        fraction = (self._t(value) - self._t(self.lo)) / (self._t(self.hi) - self._t(self.lo))
        return round(self.px_lo + fraction * (self.px_hi - self.px_lo), 1)


# Above this spread (slowest / fastest), a linear latency axis squeezes the fast variants into one pixel column.
LOG_SCALE_RATIO = 20.0


def nice_step(span: float, target_ticks: int = 5) -> float:
    """A round tick spacing (1, 2, 2.5 or 5 times a power of ten) giving about `target_ticks` intervals."""
    raw = span / max(target_ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * (1 + 1e-9))


def nice_ticks(lo: float, hi: float, target_ticks: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]; the first and last are the axis ends."""
    if not hi > lo:
        hi = lo + (abs(lo) or 1.0)
    step = nice_step(hi - lo, target_ticks)
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return [round(start + i * step, 12) for i in range(round((end - start) / step) + 1)]


def log_ticks(lo: float, hi: float, max_ticks: int = 8) -> list[float]:
    """Ticks at 1, 2 and 5 times powers of ten covering [lo, hi] (lo > 0), the axis ends at the nearest such.

    Where that gives more than `max_ticks`, only the ends and the powers of ten between them are kept.
    """
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    candidates = [round(m * 10.0**e, 12) for e in range(first, last + 1) for m in (1, 2, 5)]
    start = max(c for c in candidates if c <= lo * (1 + 1e-9))
    end = min(c for c in candidates if c >= hi * (1 - 1e-9))
    ticks = [c for c in candidates if start <= c <= end]
    if len(ticks) <= max_ticks:
        return ticks
    decades = [c for c in ticks[1:-1] if math.isclose(math.log10(c), round(math.log10(c)))]
    return [start, *decades, end]


def tick_decimals(step: float) -> int:
    """Enough decimals to tell adjacent ticks apart: a step of 0.25 needs two, 0.5 one, 5 none."""
    decimals = 0
    while decimals < 12 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return decimals


def axis_scale(
    values: list[float], px_lo: float, px_hi: float, from_zero: bool,
    log_allowed: bool = False, bounds: tuple[float, float] | None = None,
) -> tuple[Scale, list[float]]:
    """A nice axis for the values.

    Latency and throughput start at zero (so distances compare honestly) unless they spread over more than
    LOG_SCALE_RATIO and a log axis is allowed; accuracy is padded around the data and kept within `bounds`.
    """
    lo, hi = min(values), max(values)
    if log_allowed and lo > 0 and hi / lo >= LOG_SCALE_RATIO:
        ticks = log_ticks(lo / 1.25, hi * 1.25)  # a margin, so no mark sits on the frame
        return Scale(ticks[0], ticks[-1], px_lo, px_hi, log=True), ticks
    if from_zero:
        lo = min(0.0, lo)
    else:
        pad = max((hi - lo) * 0.1, abs(hi) * 0.005, 1e-6)
        lo, hi = lo - pad, hi + pad
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    ticks = nice_ticks(lo, hi)
    return Scale(ticks[0], ticks[-1], px_lo, px_hi), ticks


def axis_of(label: str, scale: Scale, ticks: list[float], factor: float = 1.0) -> Axis:
    """Ticks at their pixel positions; `factor` shows fractions as percentages."""
    if scale.log:
        return Axis(f"{label}, log scale", [Tick(scale.px(t), f"{t * factor:,g}") for t in ticks])
    decimals = tick_decimals((ticks[1] - ticks[0]) * factor)
    return Axis(label, [Tick(scale.px(t), f"{t * factor:,.{decimals}f}") for t in ticks])


@dataclass(frozen=True)
class LegendEntry:
    name: str
    color: str


@dataclass(frozen=True)
class ScatterMark:
    name: str
    color: str
    x: float
    y: float
    label: Label | None  # None where no free spot was found: the legend and tooltip still name it
    on_frontier: bool
    tooltip: str


@dataclass(frozen=True)
class ScatterChart:
    frame: Frame
    x_axis: Axis
    y_axis: Axis
    marks: list[ScatterMark]
    frontier_path: str  # SVG polyline points through the frontier, fastest first
    legend: list[LegendEntry]
    note: str  # why some or all variants are missing; "" when all are placed


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def within(self, other: Box) -> bool:
        return other.x0 <= self.x0 and self.x1 <= other.x1 and other.y0 <= self.y0 and self.y1 <= other.y1


@dataclass(frozen=True)
class Label:
    x: float
    y: float  # the text baseline
    anchor: str  # SVG text-anchor: "start" | "end" | "middle"


LABEL_CHAR_PX, LABEL_ASCENT_PX, LABEL_DESCENT_PX, MARK_RADIUS_PX = 6.4, 10.0, 3.0, 8.0


def label_box(label: Label, text: str) -> Box:
    """The pixels a label covers, estimated from its length (11 px sans-serif)."""
    width = len(text) * LABEL_CHAR_PX
    x0 = {"start": label.x, "end": label.x - width, "middle": label.x - width / 2}[label.anchor]
    return Box(x0, label.y - LABEL_ASCENT_PX, x0 + width, label.y + LABEL_DESCENT_PX)


def placed_labels(points: list[tuple[str, float, float]], frame: Frame) -> list[Label | None]:
    """A label beside each point: the first spot (right, left, above, below) free of marks and other labels.

    Points are placed in the given order, so the caller puts the important ones first; a label that fits
    nowhere is left out rather than drawn over another.
    """
    plot = Box(frame.left, frame.top, frame.right, frame.bottom)
    taken = [Box(x - MARK_RADIUS_PX, y - MARK_RADIUS_PX, x + MARK_RADIUS_PX, y + MARK_RADIUS_PX) for _, x, y in points]
    out: list[Label | None] = []
    for name, x, y in points:
        gap = MARK_RADIUS_PX + 2
        above, below = y - gap - LABEL_DESCENT_PX, y + gap + LABEL_ASCENT_PX
        candidates = (Label(x + gap, y + 4, "start"), Label(x - gap, y + 4, "end"),
                      Label(x, above, "middle"), Label(x, below, "middle"),
                      Label(x - 4, below, "start"), Label(x + 4, below, "end"),
                      Label(x - 4, above, "start"), Label(x + 4, above, "end"))
        chosen = next((c for c in candidates if label_box(c, name).within(plot)
                       and not any(label_box(c, name).overlaps(b) for b in taken)), None)
        if chosen is not None:
            taken.append(label_box(chosen, name))
        out.append(chosen)
    return out


def scatter_tooltip(point: ParetoPoint, metric: QualityMetric, on_frontier: bool) -> str:
    figures = f"{metric.label} {format_percent(point.quality, 2)}, p99 {format_ms(point.latency_ms)} ms"
    return f"{point.name}: {figures}" + (" (Pareto frontier)" if on_frontier else "")


def accuracy_latency_chart(run: RunResult, frame: Frame = Frame()) -> ScatterChart:
    """Quality (top-1 or agreement) against in-process p99 latency, one mark per measured variant."""
    metric = quality_metric(run)
    points = pareto_points(run, metric)
    frontier, colors = pareto_frontier(points), variant_colors(run)
    left_out = [v.name for v in run.variants if v.name not in {p.name for p in points}]
    note = f"not shown (failed, or no {metric.label} or p99): {', '.join(left_out)}" if left_out else ""
    if not points:
        return ScatterChart(frame, Axis("", []), Axis("", []), [], "", [], note or "no variants")
    xs, x_ticks = axis_scale([p.latency_ms for p in points], frame.left, frame.right, from_zero=True, log_allowed=True)
    ys, y_ticks = axis_scale([p.quality for p in points], frame.bottom, frame.top, from_zero=False, bounds=(0.0, 1.0))
    # Frontier variants get the first pick of label spots; then the rest, most accurate first.
    ordered = sorted(points, key=lambda p: (p.name not in frontier, -p.quality, p.latency_ms))
    coords = [(p.name, xs.px(p.latency_ms), ys.px(p.quality)) for p in ordered]
    marks = [
        ScatterMark(p.name, colors[p.name], x, y, label, p.name in frontier,
                    scatter_tooltip(p, metric, p.name in frontier))
        for p, (_, x, y), label in zip(ordered, coords, placed_labels(coords, frame), strict=True)
    ]
    front = sorted((m for m in marks if m.on_frontier), key=lambda m: (m.x, m.y))
    in_run_order = [p.name for p in points]
    return ScatterChart(
        frame,
        axis_of("in-process p99 latency (ms)", xs, x_ticks),
        axis_of(f"{metric.label} (%)", ys, y_ticks, factor=100.0),
        marks,
        " ".join(f"{m.x},{m.y}" for m in front) if len(front) > 1 else "",
        [LegendEntry(name, colors[name]) for name in in_run_order],
        note,
    )


@dataclass(frozen=True)
class LinePoint:
    x: float
    y: float
    tooltip: str


@dataclass(frozen=True)
class LoadLine:
    name: str
    color: str
    points: list[LinePoint]
    path: str  # SVG polyline points


@dataclass(frozen=True)
class LoadChart:
    frame: Frame
    x_axis: Axis
    y_axis: Axis
    lines: list[LoadLine]
    note: str


def load_points(load: LoadResult | None) -> list[tuple[LoadStep, float, float]]:
    """(step, throughput, p99) for each step with both figures, in order of concurrency."""
    out = []
    for step in sorted(load.steps if load else [], key=lambda s: s.users):
        rps, p99 = finite(step.throughput_rps), finite(step.latency.p99_ms) if step.latency else None
        if rps is not None and p99 is not None:
            out.append((step, rps, p99))
    return out


def load_curve_chart(run: RunResult, frame: Frame = Frame()) -> LoadChart:
    """p99 latency against achieved throughput under HTTP load: one polyline per variant, a point per step."""
    colors = variant_colors(run)
    series = {v.name: load_points(v.load) for v in run.variants}
    series = {name: pts for name, pts in series.items() if pts}
    left_out = [v.name for v in run.variants if v.name not in series]
    note = f"no load figures: {', '.join(left_out)}" if left_out else ""
    if not series:
        untested = all(v.load is None for v in run.variants)
        return LoadChart(frame, Axis("", []), Axis("", []), [], "no variant was load-tested" if untested else note)
    all_pts = [pt for pts in series.values() for pt in pts]
    xs, x_ticks = axis_scale([rps for _, rps, _ in all_pts], frame.left, frame.right, from_zero=True)
    ys, y_ticks = axis_scale([p99 for _, _, p99 in all_pts], frame.bottom, frame.top, from_zero=True)
    lines = []
    for name, pts in series.items():
        points = [LinePoint(xs.px(rps), ys.px(p99),
                            f"{name}, {step.users} users: {format_rps(rps)} req/s, p99 {format_ms(p99)} ms")
                  for step, rps, p99 in pts]
        lines.append(LoadLine(name, colors[name], points, " ".join(f"{p.x},{p.y}" for p in points)))
    return LoadChart(
        frame, axis_of("achieved throughput (req/s)", xs, x_ticks), axis_of("HTTP p99 latency (ms)", ys, y_ticks),
        lines, note,
    )


# ---------------------------------------------------------------- the whole page


@dataclass(frozen=True)
class Header:
    title: str
    run_id: str
    created: str
    mode: str
    baseline: str
    concurrency: str
    counts: str
    model: list[KeyValue]
    config: list[KeyValue]
    schema_version: str
    warning_count: str  # "3 warnings"; empty where there are none


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}" if count else ""


def inputs_text(inputs: Any) -> str:
    """Model inputs as "x: 1×3×224×224 float32"; anything else as recorded."""
    if not isinstance(inputs, list) or not all(isinstance(i, Mapping) for i in inputs):
        return format_value(inputs)
    parts = []
    for spec in inputs:
        shape = spec.get("shape")
        dims = "×".join(str(d) for d in shape) if isinstance(shape, list) else format_value(shape)
        parts.append(f"{spec.get('name', '?')}: {dims} {spec.get('dtype', '')}".strip())
    return "; ".join(parts) if parts else "(none)"


def concurrency_text(config: Mapping[str, Any]) -> str:
    load = config.get("load")
    users = load.get("users") if isinstance(load, Mapping) else config.get("concurrency")
    if not users:
        return "no HTTP load test"
    return ", ".join(str(u) for u in users) + " users"


def header(run: RunResult) -> Header:
    model = dict(run.model)
    model_items = [KeyValue(k, inputs_text(v) if k == "inputs" else format_value(v)) for k, v in model.items()]
    ok = sum(1 for v in run.variants if v.status == "ok")
    return Header(
        title=str(model.get("name") or "model"),
        run_id=run.run_id,
        created=format_created(run.created),
        mode="quick" if run.config.get("quick") else "default",
        baseline=run.baseline or "(none)",
        concurrency=concurrency_text(run.config),
        counts=f"{ok} of {len(run.variants)} variants ok",
        model=model_items,
        config=flattened_items(run.config),
        schema_version=str(run.schema_version),
        warning_count=plural(len(all_warnings(run)), "warning"),
    )


@dataclass(frozen=True)
class ReportView:
    header: Header
    metric: QualityMetric
    frontier: list[str]
    summary: list[SummaryRow]
    accuracy_chart: ScatterChart
    load_chart: LoadChart
    load_tables: list[LoadTable]
    failed: list[FailedVariant]
    details: list[VariantDetail]
    environment: list[KeyValue]
    warnings: list[WarningItem] = field(default_factory=list)


def report_view(run: RunResult) -> ReportView:
    """Everything the HTML page shows, computed once."""
    return ReportView(
        header=header(run),
        metric=quality_metric(run),
        frontier=[v.name for v in run.variants if v.name in frontier_names(run)],
        summary=summary_rows(run),
        accuracy_chart=accuracy_latency_chart(run),
        load_chart=load_curve_chart(run),
        load_tables=load_tables(run),
        failed=failed_variants(run),
        details=variant_details(run),
        environment=flattened_items(run.environment),
        warnings=all_warnings(run),
    )
