"""Chart geometry for the report's inline SVG: axes, ticks, marks and label placement, in pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass

from reports.formatting import finite, format_ms, format_percent, format_rps
from reports.schema import LoadResult, LoadStep, RunResult
from reports.views import ParetoPoint, QualityMetric, pareto_frontier, pareto_points, quality_metric, variant_colors

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


