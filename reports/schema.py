"""The results schema: what a run writes and what reports and gates read.

Standard library only, so `mcbench report` and `mcbench gate` run where no model runtime is
installed. Every record keeps its raw samples and states its units in the field names.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError
from mcbench.base.files import FileError, read_bytes, write_text_atomic
from mcbench.base.parsing import ParseError, json_data
from mcbench.reports.schema_check import REGENERATE, schema_errors
from mcbench.reports.schema_serving import ServingSearch, serving_from_dict
from mcbench.reports.schema_serving import ServingStep as ServingStep  # re-exported: the records live there
from mcbench.reports.schema_serving import ServingTrial as ServingTrial

SCHEMA_VERSION = 1
# A latency field holds a finite number >= 0, never null (NaN) or negative: results.schema.json says so for the
# fields marked with it, so a doctored results file cannot make the gate compare NaNs (issue 32, M13).
LATENCY = {"latency": True}


class SchemaError(UserError):
    """A results file that cannot be read as this schema."""


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of already sorted values; q in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class LatencyStats:
    """Latency of one measurement series, in milliseconds, with the raw samples (microseconds)."""

    count: int
    p50_ms: float = field(metadata=LATENCY)
    p90_ms: float = field(metadata=LATENCY)
    p99_ms: float = field(metadata=LATENCY)
    mean_ms: float = field(metadata=LATENCY)
    stdev_ms: float = field(metadata=LATENCY)
    min_ms: float = field(metadata=LATENCY)
    max_ms: float = field(metadata=LATENCY)
    samples_us: list[float] = field(default_factory=list, metadata=LATENCY)  # to 0.01 us: whole microseconds
    # moved a 15 us model's median in 7% steps and collapsed the bootstrap of its speedup to a point (issue 19)

    @classmethod
    def from_seconds(cls, values_s: list[float], keep_samples: bool = True) -> LatencyStats:
        if not values_s:
            raise ValueError("no latency samples")
        ms = sorted(v * 1e3 for v in values_s)
        return cls(
            count=len(ms),
            p50_ms=percentile(ms, 50),
            p90_ms=percentile(ms, 90),
            p99_ms=percentile(ms, 99),
            mean_ms=statistics.fmean(ms),
            stdev_ms=statistics.stdev(ms) if len(ms) > 1 else 0.0,
            min_ms=ms[0],
            max_ms=ms[-1],
            samples_us=[round(v * 1e6, 2) for v in values_s] if keep_samples else [],
        )

    @property
    def cv(self) -> float:
        """Coefficient of variation; a noise figure."""
        return self.stdev_ms / self.mean_ms if self.mean_ms > 0 else 0.0


@dataclass
class LoadStep:
    """One step of a load sweep: a fixed number of concurrent users (closed loop) or an arrival rate (open loop).

    Open-loop latencies run from each request's scheduled send time, so queueing in the generator
    or the server is charged to the step (no coordinated omission).
    """

    users: int
    duration_s: float
    requests: int
    failures: int
    throughput_rps: float  # achieved: successful answers a second
    latency: LatencyStats | None
    errors: dict[str, int] = field(default_factory=dict)
    mode: str = "closed"  # "closed" | "open"
    offered_rps: float | None = None  # open loop: scheduled sends a second
    p999_ms: float | None = None
    stable: bool | None = None  # throughput and p99 agreed across the last windows within the plan's tolerance
    windows: list[dict[str, float]] = field(default_factory=list)  # per window: start_s, rps, p99_ms
    loadgen_cpu_percent: float | None = None  # busiest Locust process, percent of one core
    loadgen_saturated: bool = False
    checked: int = 0  # answers compared with the offline outputs
    mismatches: int = 0
    worker_requests: dict[str, int] = field(default_factory=dict)  # distributed: `requests` by Locust worker
    # where the answers' time went, by the server's Server-Timing header (absent where the server sends none):
    server_timed: int = 0  # successful answers that carried one
    server_p50_ms: float | None = None  # the server's handler, from its start to the encoded answer
    server_model_p50_ms: float | None = None  # the model call alone
    server_encode_p50_ms: float | None = None  # writing the answer (JSON or binary data), within the handler
    binary_answers: int = 0  # successful answers that came as binary data (the KServe v2 extension)
    outside_server_p50_ms: float | None = None  # latency minus the handler: HTTP, the wire, kernel and generator
    # open loop: how late the generator began requests after their scheduled starts (charged to the latency)
    send_lag_p50_ms: float | None = None
    send_lag_p99_ms: float | None = None


@dataclass
class LoadResult:
    steps: list[LoadStep]
    server_cores: list[int]
    loadgen_cores: list[int]
    cores_shared: bool
    server_threads: int
    locust_total_requests: int
    locust_total_failures: int
    loadgen_cpu_percent: float | None = None
    open_steps: list[LoadStep] = field(default_factory=list)  # the open-loop sweep; `steps` is the closed loop
    budget_p99_ms: float | None = None
    stopped: dict[str, str] = field(default_factory=dict)  # sweep -> why it stopped before its last level
    locust_workers: int = 0  # 0: one local Locust process; N: distributed, a master and N workers
    locust_master: str | None = None  # workers on other machines: where the master listened for them; None: local
    tolerance: dict[str, float] = field(default_factory=dict)  # stability: windows, rps and p99 relative spread
    batching: dict[str, float] | None = None  # server dynamic batching: max_batch, max_wait_ms; None: not tried
    batched_steps: list[LoadStep] = field(default_factory=list)  # the same sweeps with batching on, to compare
    batched_open_steps: list[LoadStep] = field(default_factory=list)
    checked: int = 0
    mismatches: int = 0
    recorded_requests: int = 0  # rows recorded for requests Locust also completed, all steps: equals its own total
    server_dispatch: str | None = None  # where the server ran model calls: "inline" (event loop) or "thread"
    server_model_ms: float | None = None  # the server's warm-up median per call, which decided the dispatch
    answers: str | None = None  # what the generator asked answers to come as: "binary" or "json"
    inputs: str | None = None  # how requests carried their tensors: "binary" (the extension) or "json"

    @property
    def peak_throughput_rps(self) -> float:
        return max((s.throughput_rps for s in self.steps + self.open_steps), default=0.0)


@dataclass
class OutputRoleRecord:
    """What one output was judged as (bench.roles), why, and its batch axis in the model's layout (None: none)."""

    role: str
    reason: str
    batch_axis: int | None = None


@dataclass
class Accuracy:
    """Task accuracy on labelled data (None where no dataset) and fidelity to the FP32 baseline."""

    dataset: str | None
    samples: int
    top1: float | None
    agreement: float | None
    max_abs_diff: float | None
    mean_abs_diff: float | None
    task: str = "classification"
    metrics: dict[str, float] = field(default_factory=dict)  # top1/5, mae, cosine_*, NAME.FIGURE, worst_role, user
    per_class: dict[str, float] = field(default_factory=dict)  # label -> top-1 on that class, where labels exist
    roles: dict[str, OutputRoleRecord] = field(default_factory=dict)  # per output name, where the run judged roles


@dataclass
class Capacity:
    """What serving a target load under a p99 budget takes, from a variant's load sweep and its profile."""

    budget_p99_ms: float
    max_rps_under_budget: float | None  # None: no step of the sweep held the budget
    basis: str  # which sweep the figure comes from: "open-loop" or "closed-loop"
    target_rps: float | None = None
    replicas: int | None = None
    cost_per_hour: float | None = None  # for `replicas` replicas, at the profile's cost per replica-hour
    cost_per_million: float | None = None  # cost of one million requests at max_rps_under_budget per replica


@dataclass
class VariantResult:
    name: str
    runtime: str
    recipe: list[str]
    status: str  # "ok" | "failed" | "skipped"
    artifact: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    accuracy: Accuracy | None = None
    latency: LatencyStats | None = None
    load: LoadResult | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    profile: str | None = None  # the hardware profile this variant belongs to, where the run named profiles
    passes: list[dict[str, Any]] = field(default_factory=list)  # per pass: name, params, seconds, what it changed
    op_profile: dict[str, Any] | None = None  # where the time goes by operator type; why a variant is (not) faster
    capacity: Capacity | None = None
    exit_status: int | None = None  # a crashed or killed child's exit status (negative: the signal number)
    stderr_tail: str | None = None  # the last lines a failed child wrote to stderr
    search: dict[str, Any] | None = None  # the stage this candidate reached and why it stopped there (mcbench.search)
    serving: ServingSearch | None = None  # the serving configurations searched for a finalist


@dataclass
class ConfirmedRatio:
    """One finalist timed interleaved with the baseline in the confirmation round (mcbench.confirm).

    ratio is median(finalist) / median(baseline): the median of the per-round ratios, with its order-statistic
    interval over rounds (reports.gate_stats.median_round_ratio); below 1 is faster. The speedup is its inverse."""

    name: str
    ratio: float
    low: float
    high: float
    rounds: int
    samples: int  # per side, over all rounds
    baseline_ms: float  # the medians of all samples of the round, per side
    variant_ms: float
    threads: str = ""  # how the pair's threads were set up (remeasure.pool_note)


@dataclass
class TieDecision:
    """A finalist not surely faster than a simpler one loses the tie to it."""

    winner: str
    loser: str
    why: str


@dataclass
class Confirmation:
    """The final round: the finalists (the decision's frontier within the budget) and the baseline, timed side by
    side; the recommendation, its speedup and its interval come from here (docs/run.md#the-confirmation-round)."""

    objective: str
    profile: str  # "" on a run that named no hardware profile
    baseline: str
    finalists: list[str]  # in the decision's order, best figure first
    rounds: int
    samples_per_round: int  # at least, per side
    confidence: float
    ratios: list[ConfirmedRatio]
    ties: list[TieDecision] = field(default_factory=list)
    pick: str | None = None  # the recommendation: a finalist or the baseline; None where the round failed
    note: str = ""  # why the round failed or was cut short, where it was


@dataclass
class RunResult:
    run_id: str
    created: str
    model: dict[str, Any]
    config: dict[str, Any]
    environment: dict[str, Any]
    variants: list[VariantResult]
    baseline: str | None = None
    warnings: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    search: dict[str, Any] | None = None  # the search's time budget, time spent, and what it did not try
    objective: str | None = None  # what "best" meant: p50, p99, throughput or cost (reports.decision); None: p99
    confirmation: Confirmation | None = None  # the finalists re-timed side by side with the baseline (mcbench.confirm)

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaError(f"schema_version {version!r} is not supported (this mcbench reads {SCHEMA_VERSION})")
        try:
            fields = {k: v for k, v in data.items() if k not in ("variants", "confirmation")}
            return cls(**fields, variants=[_variant_from_dict(v) for v in data["variants"]],
                       confirmation=_confirmation_from_dict(data.get("confirmation")))
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"malformed results: {exc}") from exc


def _confirmation_from_dict(d: dict[str, Any] | None) -> Confirmation | None:
    if d is None:
        return None
    return Confirmation(**{**d, "ratios": [ConfirmedRatio(**r) for r in d.get("ratios", [])],
                           "ties": [TieDecision(**t) for t in d.get("ties", [])]})


def _latency_from_dict(d: dict[str, Any] | None) -> LatencyStats | None:
    return LatencyStats(**d) if d is not None else None


def _accuracy_from_dict(d: dict[str, Any]) -> Accuracy:
    roles = {name: OutputRoleRecord(**r) for name, r in d.get("roles", {}).items()}
    return Accuracy(**{**d, "roles": roles})


def _variant_from_dict(d: dict[str, Any]) -> VariantResult:
    d = dict(d)
    d["accuracy"] = _accuracy_from_dict(d["accuracy"]) if d.get("accuracy") is not None else None
    d["latency"] = _latency_from_dict(d.get("latency"))
    d["capacity"] = Capacity(**d["capacity"]) if d.get("capacity") is not None else None
    load = d.get("load")
    if load is not None:
        lists = {k: [LoadStep(**{**s, "latency": _latency_from_dict(s.get("latency"))}) for s in load.get(k, [])]
                 for k in ("steps", "open_steps", "batched_steps", "batched_open_steps")}
        d["load"] = LoadResult(**{**load, **lists})
    d["serving"] = serving_from_dict(d.get("serving"))
    return VariantResult(**d)


def _clean(value: Any) -> Any:
    """NaN and infinities are not JSON; they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def check_against_json_schema(data: Any, where: str) -> None:
    """Raise SchemaError where `data` breaks reports/results.schema.json (checked on write and on read)."""
    errors = schema_errors(data)
    if errors:
        hint = f" (if the dataclasses changed, regenerate the schema: {REGENERATE})" if where == "writing" else ""
        raise SchemaError(f"{where} results: does not match results.schema.json: {'; '.join(errors)}{hint}")


def save_results(run: RunResult, path: Path) -> None:
    data = _clean(run.to_dict())
    check_against_json_schema(data, "writing")
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False))


def load_results(path: Path) -> RunResult:
    path = Path(path)
    try:
        data = json_data(read_bytes(path, "results file"), str(path))
    except (FileError, ParseError) as exc:
        raise SchemaError(str(exc)) from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a JSON object")
    try:
        if data.get("schema_version") == SCHEMA_VERSION:  # another version: from_dict says which
            check_against_json_schema(data, "reading")
        return RunResult.from_dict(data)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from exc
