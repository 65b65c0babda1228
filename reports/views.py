"""What the report shows, computed from a RunResult: formatted rows, tables, warnings.

The HTML template and the terminal table only lay these values out (style principle 12): every
figure and comparison is computed here or in `reports.plots`, where it is unit-tested; the frontier mark comes
from `reports.decision`, as the charts' and the recommendation's do.
Standard library only, like the schema, so a report renders on a box with no model runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcbench.base.text import first_line
from mcbench.reports.decision import frontier_names
from mcbench.reports.formatting import (
    NA,
    Cell,
    KeyValue,
    finite,
    flattened_items,
    format_count,
    format_diff,
    format_ms,
    format_percent,
    format_rps,
    format_seconds,
    format_size,
    format_speedup,
    format_value,
    inputs_text,
    number_cell,
)
from mcbench.reports.quality import QualityMetric, measured, quality_metric, quality_of, within_budget
from mcbench.reports.schema import ConfirmedRatio, LatencyStats, LoadResult, LoadStep, RunResult, VariantResult

ERROR_CHARS = 120  # an error's line in a table cell

# Tableau 10, a palette made for telling categories apart; a variant keeps its colour in every chart.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)


# ---------------------------------------------------------------- summary table


def baseline_p50_ms(run: RunResult) -> float | None:
    """The baseline's in-process p50, the denominator of every speedup; None where it did not run."""
    for v in run.variants:
        if v.name == run.baseline and measured(v) and v.latency is not None:
            return finite(v.latency.p50_ms)
    return None


ROUGH_TAIL_SAMPLES = 1000  # a p99 from fewer samples rests on fewer than 10 observations past it
SPEEDUP_RESAMPLES = 400


@dataclass(frozen=True)
class Speedup:
    """Baseline median / variant median, with a bootstrap interval where both runs kept their raw samples."""

    ratio: float
    low: float | None = None
    high: float | None = None
    basis: str = "medians"  # or "N interleaved rounds": the confirmation round timed both side by side

    @property
    def within_noise(self) -> bool:
        return self.low is not None and self.high is not None and self.low <= 1 <= self.high

    def versus(self, baseline_ms: str) -> str:
        """'4.00× faster than the baseline's 0.400 ms (medians, 95% CI 3.91-4.08×)', or 'within noise of ...'."""
        interval = ("no raw samples for an interval" if self.low is None
                    else f"95% CI {format_speedup(self.low)}-{format_speedup(self.high)}")
        if self.within_noise:
            return (f"within noise of the baseline's {baseline_ms} ms ({self.basis}: {format_speedup(self.ratio)}, "
                    f"{interval})")
        how = f"than the baseline's {baseline_ms} ms ({self.basis}, {interval})"
        if self.ratio >= 1:
            return f"{format_speedup(self.ratio)} faster {how}"
        return f"{format_speedup(1 / self.ratio)} slower {how}"


def speedup_estimate(baseline: LatencyStats | None, latency: LatencyStats | None,
                     confirmed: ConfirmedRatio | None = None) -> Speedup | None:
    """The median speedup and its 95% interval: from the confirmation round where the variant was in one (both timed
    side by side, interleaved: mcbench.confirm), else from the two stored timings' raw samples (a bootstrap), which
    may have been taken minutes apart."""
    from mcbench.reports.gate_stats import MIN_SAMPLES, bootstrap_ratio_ci

    if confirmed is not None and finite(confirmed.ratio) and confirmed.ratio > 0:
        basis = f"{confirmed.rounds} interleaved rounds"
        return Speedup(1 / confirmed.ratio, 1 / confirmed.high, 1 / confirmed.low, basis)

    base = finite(baseline.p50_ms) if baseline is not None else None
    mine = finite(latency.p50_ms) if latency is not None else None
    if base is None or mine is None or mine <= 0:
        return None
    a, b = baseline.samples_us, latency.samples_us
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return Speedup(base / mine)
    low, high = bootstrap_ratio_ci(list(b), list(a), 0.95, SPEEDUP_RESAMPLES, seed=0)  # median(a) / median(b)
    return Speedup(base / mine, low, high)


def tail_text(latency: LatencyStats) -> str:
    """'p99 0.300 ms over 3,000 samples', marked as rough under 1,000 samples; never a ratio."""
    rough = f" (fewer than {ROUGH_TAIL_SAMPLES:,}: a rough tail)" if latency.count < ROUGH_TAIL_SAMPLES else ""
    return f"p99 {format_ms(latency.p99_ms)} ms over {format_count(latency.count)} samples{rough}"


def speedup(baseline_p50: float | None, latency: LatencyStats | None) -> float | None:
    """Baseline p50 / variant p50: above 1 is faster than the baseline."""
    p50 = finite(latency.p50_ms) if latency is not None else None
    if baseline_p50 is None or p50 is None or p50 <= 0:
        return None
    return baseline_p50 / p50


SWEEPS = (("closed", "steps"), ("open", "open_steps"), ("batched closed", "batched_steps"),
          ("batched open", "batched_open_steps"))


def load_sweeps(load: LoadResult | None) -> list[tuple[str, list[LoadStep]]]:
    """The sweeps a load result holds, named: closed and open loop, then the same with server batching."""
    return [(name, getattr(load, attr)) for name, attr in SWEEPS if load is not None and getattr(load, attr)]


def all_steps(load: LoadResult | None) -> list[LoadStep]:
    return [s for _, steps in load_sweeps(load) for s in steps]


def peak_step(load: LoadResult | None) -> LoadStep | None:
    """The unbatched step (closed or open loop) with the highest achieved throughput (the first, on a tie)."""
    steps = [s for s in (load.steps + load.open_steps if load else []) if finite(s.throughput_rps) is not None]
    return max(steps, key=lambda s: s.throughput_rps, default=None)


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


def recipe_text(recipe: Sequence[str]) -> str:
    return " → ".join(recipe) if recipe else "(none)"


def variant_colors(run: RunResult) -> dict[str, str]:
    return {v.name: PALETTE[i % len(PALETTE)] for i, v in enumerate(run.variants)}


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


# ---------------------------------------------------------------- load tables


@dataclass(frozen=True)
class LoadStepRow:
    sweep: str  # closed, open, batched closed, batched open
    level: Cell  # closed loop: users; open loop: offered req/s
    duration_s: Cell
    requests: Cell
    failures: Cell
    rps: Cell
    p50: Cell
    server: Cell  # the server's own time by its Server-Timing header (p50); n/a where it sends none
    model: Cell
    p90: Cell
    p99: Cell
    p999: Cell
    late: Cell  # open loop: the generator's send lag, p99
    samples: Cell
    stable: str
    errors: str
    is_peak: bool


@dataclass(frozen=True)
class LoadTable:
    name: str
    color: str
    rows: list[LoadStepRow]
    facts: list[KeyValue]


def load_step_row(step: LoadStep, is_peak: bool, sweep: str = "closed") -> LoadStepRow:
    lat = step.latency
    errors = "; ".join(f"{count}× {message}" for message, count in step.errors.items())
    level = (number_cell(step.users, lambda u: f"{format_count(u)} users") if step.mode == "closed"
             else number_cell(step.offered_rps, lambda r: NA if finite(r) is None else f"{format_rps(r)} req/s"))
    return LoadStepRow(
        sweep=sweep,
        level=level,
        duration_s=number_cell(step.duration_s, format_seconds),
        requests=number_cell(step.requests, format_count),
        failures=number_cell(step.failures, format_count),
        rps=number_cell(step.throughput_rps, format_rps),
        p50=number_cell(lat.p50_ms if lat else None, format_ms),
        server=number_cell(step.server_p50_ms, format_ms),
        model=number_cell(step.server_model_p50_ms, format_ms),
        p90=number_cell(lat.p90_ms if lat else None, format_ms),
        p99=number_cell(lat.p99_ms if lat else None, format_ms),
        p999=number_cell(step.p999_ms, format_ms),
        late=number_cell(step.send_lag_p99_ms, format_ms),
        samples=number_cell(lat.count if lat else None, format_count),
        stable={True: "yes", False: "no", None: NA}[step.stable],
        errors=errors,
        is_peak=is_peak,
    )


def cores_text(cores: Sequence[int]) -> str:
    return ", ".join(str(c) for c in cores) if cores else NA


def dispatch_text(load: LoadResult) -> str:
    took = "" if finite(load.server_model_ms) is None else f" (warm-up median {load.server_model_ms:.3g} ms a call)"
    if load.server_dispatch == "inline":
        return f"on the server's event loop{took}: faster than a handoff to a worker thread"
    return f"in a worker thread{took}"


def load_facts(load: LoadResult) -> list[KeyValue]:
    """How the load test was set up: the core split decides how far its figures can be trusted."""
    return [
        KeyValue("server cores", cores_text(load.server_cores)),
        KeyValue("load generator cores", cores_text(load.loadgen_cores)),
        KeyValue("cores shared", "yes: HTTP figures are pessimistic" if load.cores_shared else "no"),
        KeyValue("server threads", format_count(load.server_threads)),
        *([KeyValue("model calls", dispatch_text(load))] if load.server_dispatch else []),
        KeyValue("Locust requests / failures",
                 f"{format_count(load.locust_total_requests)} / {format_count(load.locust_total_failures)}"),
        KeyValue("load generator CPU", NA if finite(load.loadgen_cpu_percent) is None
                 else f"{load.loadgen_cpu_percent:.0f}%"),
        *[KeyValue(f"{sweep} sweep stopped", why) for sweep, why in load.stopped.items()],
        *([KeyValue("server dynamic batching", f"max batch {load.batching.get('max_batch')}, "
                    f"wait up to {load.batching.get('max_wait_ms')} ms (the batched rows)")] if load.batching else []),
        *([KeyValue("answers", answers_text(load))] if load.answers else []),
        *([KeyValue("encoding the answer", encoding)] if (encoding := encoding_text(load)) else []),
    ]


ENCODING_SHARE = 0.1  # the share of the server's time spent writing answers past which the report says it


def answers_text(load: LoadResult) -> str:
    """What the generator asked the answers to come as, and how many came so."""
    steps = load.steps + load.open_steps
    answered = sum(s.latency.count for s in steps if s.latency)
    binary = sum(s.binary_answers for s in steps)
    if load.answers == "json":
        return "asked for as JSON"
    return f"asked for as binary data (KServe v2 binary tensor extension): {format_count(binary)} of " \
           f"{format_count(answered)} answers came so" + ("" if binary == answered else ", the rest as JSON")


def encoding_text(load: LoadResult) -> str | None:
    """At the peak step, how much of a request's server time went to writing its answer, where over a tenth."""
    peak = peak_step(load)
    if peak is None or finite(peak.server_encode_p50_ms) is None or not finite(peak.server_p50_ms):
        return None
    share = peak.server_encode_p50_ms / peak.server_p50_ms
    if share <= ENCODING_SHARE:
        return None
    fix = " (asking for binary answers would cut it: --answers binary)" if load.answers == "json" else ""
    took = f"{format_ms(peak.server_encode_p50_ms)} ms of {format_ms(peak.server_p50_ms)} ms at p50"
    return f"{share:.0%} of the server's time a request at the peak step ({took}): the throughput is partly the " \
           f"serialiser's{fix}"


def load_tables(run: RunResult) -> list[LoadTable]:
    """One table per variant that has a load result, one row per step of each sweep, the peak step marked."""
    colors, tables = variant_colors(run), []
    for v in run.variants:
        if v.load is None:
            continue
        peak = peak_step(v.load)
        rows = [load_step_row(s, s is peak, sweep) for sweep, steps in load_sweeps(v.load) for s in steps]
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
        KeyValue("task", acc.task),
        *(KeyValue(f"output {name}", f"{r.role}, batch axis {format_value(r.batch_axis)}: {r.reason}")
          for name, r in acc.roles.items()),
        *(KeyValue(name, format_value(value)) for name, value in acc.metrics.items() if name != "top1"),
    ]


def variant_details(run: RunResult) -> list[VariantDetail]:
    colors = variant_colors(run)
    return [
        VariantDetail(
            name=v.name, color=colors[v.name], status=v.status, runtime=v.runtime, recipe=recipe_text(v.recipe),
            passes=pass_rows(v.passes or v.artifact.get("passes")), artifact=artifact_items(v.artifact),
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
    if variant.status == "skipped" and "skip" not in said:
        found.append(f"skipped: {first_line(variant.error, ERROR_CHARS) or '(no reason recorded)'}")
    load = variant.load
    if load is not None and load.cores_shared and "shar" not in said:
        found.append("server and load generator share CPU cores: HTTP figures are pessimistic")
    failures = sum(s.failures for s in all_steps(load))
    if load is not None and failures > 0:
        requests = sum(s.requests for s in all_steps(load))
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


