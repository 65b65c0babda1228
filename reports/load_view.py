"""The load test as the report shows it: the sweeps, the peak step, one table a variant and how it was set up.

Computed here and unit-tested; the templates only lay it out (style principle 12). Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mcbench.reports.formatting import (
    NA,
    Cell,
    KeyValue,
    finite,
    format_count,
    format_ms,
    format_rps,
    format_seconds,
    number_cell,
    variant_colors,
)
from mcbench.reports.schema import LoadResult, LoadStep, RunResult

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
