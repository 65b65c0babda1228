"""The load stage: Locust, in its own processes and on its own cores, drives a served model step by step.

This module never imports locust (importing it patches the process with gevent); it starts
`locust -f bench/locustfile.py` once a step (a master and N workers in distributed mode) and reads
back each process's per-request records and Locust's own totals. In distributed mode the workers send
their records to the master (Locust's custom messages), which writes them one file a worker; the workers
may be on other machines (`Master`: this machine runs only the master, `mcbench load-worker` the workers).

Two sweeps: a closed loop over concurrent users, and an open loop over arrival rates. Each step is
measured in windows; it is stable when throughput and p99 agree across the last windows within the
stated tolerance, else it is extended (another Locust run of the same step) up to a limit and then
reported as unstable. A sweep stops at the first step whose p99 passes the budget, that has errors,
or (open loop) whose achieved rate falls well short of the offered one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.bench.isolate import die_with_parent
from mcbench.bench.protocol import encode_infer_request
from mcbench.reports.schema import LatencyStats, LoadResult, LoadStep

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_ALLOWANCE_S = 60.0
SATURATED_CPU_PERCENT = 90.0
SAFETY_MARGIN_S = 30  # a run ends itself (the lone process, or the master once every worker reported);
# Locust's --run-time, this much longer, only catches a hang or a worker that died
MIN_WINDOW_ANSWERS = 100  # fewer answers than this in a window give no p99 worth comparing
SHORTFALL = 0.8  # open loop: achieved below this share of offered means the server cannot keep up
MIN_OPEN_ARRIVALS = 10  # an open step expecting fewer arrivals in its counted seconds measures nothing (Poisson at
# 1.4 req/s sends none in 2.5 s 3% of the time): a fraction of a slow model's peak below this is not run


TIMED_COLUMNS = ("model_ms", "app_ms", "lag_s", "encode_ms", "binary")  # Records' columns a row may lack (NaN)
ANSWERS = ("binary", "json")  # the forms answers are asked in, and requests carry their tensors in


class LoadError(RuntimeError):
    """Locust could not run a step (died, hung, wrote nothing); the message holds the end of its log."""


@dataclass(frozen=True)
class Endpoint:
    """A KServe v2 server to load: its base URL, the model's name, and any headers (a bearer token)."""

    url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def infer_path(self) -> str:
        return f"/v2/models/{self.model}/infer"


@dataclass(frozen=True)
class Master:
    """Load from other machines: this machine runs only Locust's master, listening here for the workers
    (`mcbench load-worker --master HOST:PORT`); each step's master waits up to wait_s for them."""

    bind_host: str = "*"
    bind_port: int = 5557
    wait_s: float = 120.0

    @property
    def address(self) -> str:
        host = socket.gethostname() if self.bind_host in ("*", "0.0.0.0", "::", "") else self.bind_host
        return f"{host}:{self.bind_port}"


@dataclass(frozen=True)
class StepRules:
    """How long each step runs and when it counts as settled."""

    seconds: float = 10.0  # one Locust run of a step; rounded up to whole seconds
    warmup_s: float = 2.0  # the start of each run that is not counted
    max_seconds: float = 30.0  # extension limit: total run time of one step
    windows: int = 4  # measured windows per run
    compare_last: int = 3  # stable when the last this-many windows agree
    rps_tolerance: float = 0.10  # relative spread (max - min) / median allowed in throughput
    p99_tolerance: float = 0.25  # and in p99
    budget_p99_ms: float | None = None  # stop the sweep past it
    arrivals: str = "poisson"  # open loop: "poisson" | "constant"
    grace_s: float = 2.0  # open loop: time after the schedule for the last answers (closed loop: 1 s)
    check_every: int = 10  # compare every Nth answer with the offline outputs (0: never)

    def __post_init__(self) -> None:
        if self.seconds <= self.warmup_s or self.warmup_s < 0:
            raise ValueError(f"a load step of {self.seconds} s must be longer than its {self.warmup_s} s warm-up")
        if self.arrivals not in ("poisson", "constant"):
            raise ValueError(f"arrivals must be poisson or constant, got {self.arrivals!r}")
        if self.windows < self.compare_last or self.compare_last < 2:
            raise ValueError("windows must be at least compare_last, and compare_last at least 2")

    @property
    def run_seconds(self) -> int:
        return math.ceil(self.seconds)


@dataclass
class Requests:
    """The requests the generator sends in turn, and the offline outputs a sample of answers is checked against.

    `answers`: "binary" asks for every output as binary data (the KServe v2 binary tensor data extension; a
    server without it answers JSON, which is read as well), "json" for JSON: what a client of the model would ask.
    `inputs`: how the requests carry their tensors, "binary" (the same extension) or "json" (for a server that
    refuses binary data in requests, as MLServer does).
    """

    bodies: list[bytes]
    headers: dict[str, str]
    expected: list[list[np.ndarray]] | None = None
    answers: str = "binary"
    inputs: str = "binary"

    @classmethod
    def encode(cls, feeds: list[dict[str, np.ndarray]], expected: list[list[np.ndarray]] | None = None,
               answers: str = "binary", inputs: str = "binary") -> Requests:
        for name, value in (("answers", answers), ("inputs", inputs)):
            if value not in ANSWERS:
                raise ValueError(f"{name} must be one of {', '.join(ANSWERS)}, got {value!r}")
        encoded = [encode_infer_request(f, binary=inputs == "binary", binary_answer=answers == "binary")
                   for f in feeds]
        return cls([b for b, _ in encoded], encoded[0][1], expected, answers, inputs)

    def write(self, folder: Path) -> dict[str, str]:
        """Write the bodies (and expected outputs) for the locustfile; the environment that points to them."""
        folder.mkdir(parents=True, exist_ok=True)
        for i, body in enumerate(self.bodies):
            (folder / f"request_{i}.bin").write_bytes(body)
        env = {"MCBENCH_BODIES": str(folder)}
        if self.expected:
            arrays = {f"{i}/{k}": np.asarray(o) for i, outs in enumerate(self.expected) for k, o in enumerate(outs)}
            np.savez(folder / "expected.npz", **arrays)
            env["MCBENCH_EXPECTED"] = str(folder / "expected.npz")
        return env


@dataclass
class Records:
    """Per-request rows from every Locust process of one step: start (s), latency (s), status, error, check, the
    server's model and handler times by its Server-Timing header (ms), in the open loop how late the generator
    began the request (s), the server's encoding time (ms), and whether the answer was binary data (1) or JSON (0);
    NaN where a row has none of the last five."""

    start_s: np.ndarray
    latency_s: np.ndarray
    status: np.ndarray
    error: np.ndarray  # index into error_kinds, 0 for none
    check: np.ndarray  # 0 not checked, 1 matched the offline output, 2 did not
    error_kinds: list[str]
    cpu_percent: list[float] = field(default_factory=list)  # per Locust process
    worker: np.ndarray | None = None  # index into `workers` per row (None: all rows from one unnamed process)
    workers: list[str] = field(default_factory=lambda: [""])  # distributed: the workers' names; "" unnamed
    model_ms: np.ndarray | None = None  # None: no row has one
    app_ms: np.ndarray | None = None
    lag_s: np.ndarray | None = None  # open loop: how late each request began after its scheduled start
    encode_ms: np.ndarray | None = None  # the server's time writing the answer
    binary: np.ndarray | None = None  # 1: the answer came as binary data, 0: as JSON

    @property
    def answered(self) -> np.ndarray:
        """Rows with a whole answer: a 200 whose binary data adds up (a 200 that does not has an error)."""
        return (self.status == 200) & (self.error == 0)

    def __post_init__(self) -> None:
        if self.worker is None:
            self.worker = np.zeros(len(self.start_s), dtype=int)
        for name in TIMED_COLUMNS:
            if getattr(self, name) is None:
                setattr(self, name, np.full(len(self.start_s), np.nan))

    @classmethod
    def from_rows(cls, rows: np.ndarray, error_kinds: list[str], cpu_percent: list[float] | None = None,
                  workers: list[str] | None = None) -> Records:
        """From the locustfile's rows: 5 columns, 8 with the server's times and the generator's lateness, or 10 with
        the server's encoding time and the answer's form."""
        timed = {name: rows[:, 5 + i] if rows.shape[1] > 5 + i else None for i, name in enumerate(TIMED_COLUMNS)}
        return cls(rows[:, 0], rows[:, 1], rows[:, 2].astype(int), rows[:, 3].astype(int), rows[:, 4].astype(int),
                   error_kinds, cpu_percent or [], workers=workers or [""], **timed)

    @classmethod
    def empty(cls) -> Records:
        return cls.from_rows(np.zeros((0, 5 + len(TIMED_COLUMNS))), [""])

    @classmethod
    def load(cls, path: Path) -> Records:
        with np.load(path) as data:
            rows, usage = data["records"], data["usage"]
            kinds = [str(k) for k in data["error_kinds"]]
            name = str(data["worker"]) if "worker" in data.files else ""  # the master names each worker's file
        cpu = [float(100.0 * usage[1] / usage[0])] if usage[0] > 0 else []
        return cls.from_rows(rows, kinds, cpu, [name])

    def merged(self, other: Records, shift_s: float = 0.0) -> Records:
        """Both sets of rows, `other`'s starts moved by shift_s, its error codes and workers renumbered into ours."""
        kinds, errors = _renumbered(self.error_kinds, other.error_kinds, other.error)
        workers, worker = _renumbered(self.workers, other.workers, other.worker)
        return Records(np.concatenate([self.start_s, other.start_s + shift_s]),
                       np.concatenate([self.latency_s, other.latency_s]),
                       np.concatenate([self.status, other.status]), np.concatenate([self.error, errors]),
                       np.concatenate([self.check, other.check]), kinds, self.cpu_percent + other.cpu_percent,
                       np.concatenate([self.worker, worker]), workers,
                       *(np.concatenate([getattr(self, k), getattr(other, k)]) for k in TIMED_COLUMNS))


def _renumbered(names: list[str], other_names: list[str], codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """`names` extended by `other_names`, and `codes` (indices into other_names) as indices into the result."""
    names = list(names)
    remap = []
    for name in other_names:
        if name not in names:
            names.append(name)
        remap.append(names.index(name))
    return names, (np.asarray(remap, dtype=int)[codes] if len(codes) else np.asarray(codes, dtype=int))


def windows_of(records: Records, spans: list[tuple[float, float]], per_span: int) -> list[dict[str, float]]:
    """Each span cut into `per_span` equal windows: start, successful answers a second, p99 (ms)."""
    out = []
    for lo, hi in spans:
        edges = np.linspace(lo, hi, per_span + 1)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            inside = (records.start_s >= a) & (records.start_s < b)
            ok = inside & records.answered
            lat = records.latency_s[ok]
            out.append({"start_s": round(float(a), 6), "answers": int(ok.sum()), "rps": float(ok.sum() / (b - a)),
                        "p99_ms": float(np.percentile(lat, 99) * 1e3) if len(lat) else math.nan})
    return out


def spread(values: list[float]) -> float:
    """(max - min) / median: how far apart a few window figures are, relative to their middle."""
    if any(math.isnan(v) for v in values) or not values:
        return math.inf
    mid = float(np.median(values))
    return (max(values) - min(values)) / mid if mid > 0 else math.inf


def is_stable(windows: list[dict[str, float]], rules: StepRules) -> bool:
    """The last windows agree: throughput within max(rps_tolerance, 3/sqrt(n)) (n answers in the smallest
    window: Poisson counting noise), p99 within p99_tolerance, and each window has MIN_WINDOW_ANSWERS."""
    last = windows[-rules.compare_last:]
    if len(last) < rules.compare_last or min(w["answers"] for w in last) < MIN_WINDOW_ANSWERS:
        return False
    counting = 3 / math.sqrt(min(w["answers"] for w in last))
    return (spread([w["rps"] for w in last]) <= max(rules.rps_tolerance, counting)
            and spread([w["p99_ms"] for w in last]) <= rules.p99_tolerance)


def step_from_records(records: Records, spans: list[tuple[float, float]], users: int, mode: str,
                      rules: StepRules, offered_rps: float | None = None) -> LoadStep:
    """A step's figures from the requests that started inside its measured spans (each run after its warm-up)."""
    chosen = np.zeros(len(records.start_s), dtype=bool)
    for lo, hi in spans:
        chosen |= (records.start_s >= lo) & (records.start_s < hi)
    measured = sum(hi - lo for lo, hi in spans)
    ok = chosen & records.answered
    codes, counts = np.unique(records.error[chosen & ~ok], return_counts=True)
    windows = windows_of(records, spans, rules.windows)
    latencies = records.latency_s[ok]
    cpu = max(records.cpu_percent) if records.cpu_percent else None
    return LoadStep(
        users=users,
        duration_s=round(measured, 6),
        requests=int(chosen.sum()),
        failures=int((chosen & ~ok).sum()),
        throughput_rps=float(ok.sum() / measured) if measured > 0 else 0.0,
        latency=LatencyStats.from_seconds(latencies.tolist(), keep_samples=False) if ok.any() else None,
        errors={records.error_kinds[c] or "unknown": int(n) for c, n in zip(codes, counts, strict=True)},
        mode=mode,
        offered_rps=offered_rps,
        p999_ms=float(np.percentile(latencies, 99.9) * 1e3) if ok.any() else None,
        stable=is_stable(windows, rules),
        windows=windows,
        loadgen_cpu_percent=cpu,
        loadgen_saturated=cpu is not None and cpu > SATURATED_CPU_PERCENT,
        checked=int((records.check[chosen] > 0).sum()),
        mismatches=int((records.check[chosen] == 2).sum()),
        worker_requests={name: int((chosen & (records.worker == i)).sum())
                         for i, name in enumerate(records.workers) if name},
        **server_split(records, ok),
        **send_lag(records, chosen),
    )


def send_lag(records: Records, chosen: np.ndarray) -> dict[str, Any]:
    """Open loop: how late the generator began its requests after their scheduled starts (ms), as LoadStep fields.
    Each request is charged from its schedule, so a late generator reads as a slow server: a p99 lag near the
    step's p99 latency says the tail is the generator's."""
    lag = records.lag_s[chosen]
    lag = lag[~np.isnan(lag)]
    if not len(lag):
        return {}
    return {"send_lag_p50_ms": float(np.median(lag) * 1e3), "send_lag_p99_ms": float(np.percentile(lag, 99) * 1e3)}


def server_split(records: Records, ok: np.ndarray) -> dict[str, Any]:
    """Where the successful answers' time went, by the server's own Server-Timing: the model call, the writing of
    the answer, the server's handler, and the rest (HTTP, the wire, the kernel, the generator), as LoadStep fields;
    and how many answers came as binary data. Only the answer count where the server sent no timing."""
    binary = {"binary_answers": int((ok & (records.binary == 1)).sum())}
    timed = ok & ~np.isnan(records.app_ms)
    if not timed.any():
        return binary
    app, model, encode = records.app_ms[timed], records.model_ms[timed], records.encode_ms[timed]
    model = model[~np.isnan(model)]  # a batched call has no per-request model time
    encode = encode[~np.isnan(encode)]  # a server other than mcbench's may not say
    outside = records.latency_s[timed] * 1e3 - app
    return {**binary, "server_timed": int(timed.sum()), "server_p50_ms": float(np.median(app)),
            "server_model_p50_ms": float(np.median(model)) if len(model) else None,
            "server_encode_p50_ms": float(np.median(encode)) if len(encode) else None,
            "outside_server_p50_ms": float(np.median(outside))}


@dataclass
class Generator:
    """Where and how Locust runs: its cores, and 0 (one process) or N distributed workers: local processes,
    or (with `master`) `mcbench load-worker`s on other machines."""

    cores: list[int] | None = None
    workers: int = 0
    work_dir: Path = Path(".")
    totals: list[int] = field(default_factory=lambda: [0, 0, 0])  # Locust's requests, failures; our rows
    master: Master | None = None

    def run(self, endpoint: Endpoint, env: dict[str, str], user_class: str, users: int,
            run_s: int, tag: str) -> Records:
        """One Locust run; the merged records of its processes. A Locust that dies or hangs is a LoadError."""
        prefix = self.work_dir / tag
        for old in [*self.work_dir.glob(f"{tag}.samples.*.npz"), self.work_dir / f"{tag}.samples.workers.json"]:
            old.unlink(missing_ok=True)
        env = {**os.environ, **env, "MCBENCH_SAMPLES": str(self.work_dir / f"{tag}.samples"),
               "MCBENCH_HEADERS": json.dumps(env_headers(env, endpoint)), "MCBENCH_PATH": endpoint.infer_path}
        common = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
        limit = run_s + SAFETY_MARGIN_S
        lead = [*common, "--headless", "--host", endpoint.url, "-u", str(users), "-r", str(max(users, 1) * 100),
                "-t", f"{limit}s", "--only-summary", "--exit-code-on-error", "0", "--csv", str(prefix),
                "--json-file", str(prefix) + "_totals", user_class]
        timeout = limit + STARTUP_ALLOWANCE_S
        log = self.work_dir / f"{tag}.log"
        if not self.workers:
            procs = [self._start(lead, env, self.cores, log)]
        else:
            host, port, wait = ((self.master.bind_host, self.master.bind_port, self.master.wait_s) if self.master
                                else ("127.0.0.1", free_port(), STARTUP_ALLOWANCE_S))
            master = [*lead, "--master", "--master-bind-host", host, "--master-bind-port", str(port),
                      "--expect-workers", str(self.workers), "--expect-workers-max-wait", str(math.ceil(wait))]
            cores = self.cores or []
            procs = [self._start(master, env, cores, log)]
            timeout += wait
            if not self.master:  # local workers; from other machines they are `mcbench load-worker`s
                worker = [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), user_class]
                procs += [self._start(worker, {**env, "MCBENCH_WORKER_NAME": f"local-{i}"},
                                      [cores[i % len(cores)]] if cores else None,
                                      self.work_dir / f"{tag}.worker{i}.log") for i in range(self.workers)]
        try:
            self._wait(procs, timeout, prefix)
        except LoadError:
            if self.workers and "Gave up waiting for workers" in _tail(log):
                raise LoadError(self._too_few_workers(tag, wait)) from None
            raise
        return self._collect(tag, prefix)

    def _too_few_workers(self, tag: str, wait_s: float) -> str:
        """One line: how many workers came, and how to start the missing ones."""
        status = self.work_dir / f"{tag}.samples.workers.json"
        came = json.loads(status.read_text())["connected"] if status.exists() else []
        names = f" ({', '.join(came)})" if came else ""
        where = (f"start them with `mcbench load-worker --master {self.master.address}` (the port must be reachable "
                 "from their machines)" if self.master else f"see {self.work_dir / tag}.worker*.log")
        return f"{len(came)} of {self.workers} Locust workers connected within {wait_s:g} s{names}; {where}"

    def _start(self, cmd: list[str], env: dict[str, str], cores: list[int] | None, log: Path):
        def pin() -> None:
            die_with_parent()  # a run killed outright takes its Locust processes with it
            if cores:
                os.sched_setaffinity(0, set(cores))

        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin,
                                    start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        return proc

    def _wait(self, procs: list, timeout_s: float, prefix: Path) -> None:
        deadline = time.monotonic() + timeout_s
        try:
            for proc in procs:
                proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            raise LoadError(f"Locust did not finish within {timeout_s:.0f} s: {_tail(procs[0].log)}") from None
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        for proc in procs:
            if proc.returncode != 0:
                raise LoadError(f"Locust exited with code {proc.returncode}: {_tail(proc.log)}")

    def _collect(self, tag: str, prefix: Path) -> Records:
        files = sorted(self.work_dir.glob(f"{tag}.samples.*.npz"))
        expected = max(self.workers, 1)
        if len(files) < expected or (len(files) > expected and not self.master):  # more: extra remote workers came
            what = "Locust workers sent" if self.workers else "Locust processes wrote"
            raise LoadError(f"{len(files)} of {expected} {what} their records "
                            f"(one died?): {_tail(self.work_dir / f'{tag}.log')}")
        records = Records.empty()
        for path in files:
            records = records.merged(Records.load(path))
        totals = locust_totals(Path(str(prefix) + "_totals.json"))
        self.totals[0] += totals[0]
        self.totals[1] += totals[1]
        self.totals[2] += locust_seen(records)
        return records


UNSENT_KINDS = ("no answer by the end of the step", "load generator backlog")  # rows Locust never completes


def locust_seen(records: Records) -> int:
    """Rows for requests Locust also counted: all but those still out at the end or never sent."""
    unsent = [i for i, kind in enumerate(records.error_kinds) if kind in UNSENT_KINDS]
    return int(len(records.error) - np.isin(records.error, unsent).sum())


def env_headers(env: dict[str, str], endpoint: Endpoint) -> dict[str, str]:
    return {**json.loads(env.get("MCBENCH_HEADERS", "{}")), **endpoint.headers}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_step(gen: Generator, endpoint: Endpoint, env: dict[str, str], mode: str, level: float,
                 rules: StepRules, tag: str) -> LoadStep:
    """Run one step, extending it (further runs of the same step) until its windows agree or the limit is hit."""
    run_s = rules.run_seconds
    records, spans, elapsed, offset, index = Records.empty(), [], 0.0, 0.0, 0
    step_env = {**env, "MCBENCH_SECONDS": str(run_s)}
    grace = 1.0 if mode == "closed" else rules.grace_s
    step_env["MCBENCH_GRACE_S"] = str(grace)
    if mode == "closed":
        users, user_class, offered = int(level), "ClosedLoopUser", None
    else:
        users, user_class, offered = max(gen.workers, 1), "OpenLoopUser", float(level)
        step_env.update(MCBENCH_RATE=str(level), MCBENCH_STREAMS=str(users), MCBENCH_ARRIVALS=rules.arrivals)
    while True:
        length = run_s + math.ceil(grace)  # from the first user's start; Locust's own limit has a margin
        chunk = gen.run(endpoint, step_env, user_class, users, length, f"{tag}_run{index}")
        records = records.merged(chunk, offset)
        spans.append((offset + rules.warmup_s, offset + run_s))
        elapsed += run_s
        offset += length + 1.0  # a gap between runs, so no window straddles two of them
        step = step_from_records(records, spans, users, mode, rules, offered)
        index += 1
        if step.stable or elapsed + run_s > rules.max_seconds:
            return step


def stop_reason(step: LoadStep, rules: StepRules) -> str | None:
    """Why the sweep should not go on past this step, or None."""
    if step.failures:
        kinds = ", ".join(f"{n} {k}" for k, n in step.errors.items())
        return f"errors at {describe(step)}: {kinds}"
    if rules.budget_p99_ms is not None and step.latency and step.latency.p99_ms > rules.budget_p99_ms:
        return f"p99 {step.latency.p99_ms:.2f} ms passed the {rules.budget_p99_ms:g} ms budget at {describe(step)}"
    if step.latency is None:
        return f"no successful answer at {describe(step)}"
    if step.offered_rps and step.throughput_rps < SHORTFALL * step.offered_rps:
        return f"achieved {step.throughput_rps:.0f} of {step.offered_rps:.0f} req/s offered: the server cannot keep up"
    return None


ENCODING_SHARE = 0.1  # a step whose answers took more than this share of the server's time to write says so


def encoding_share(step: LoadStep) -> float | None:
    """The share of the server's time (p50) spent writing the answer, or None where the server did not say."""
    if step.server_encode_p50_ms is None or not step.server_p50_ms:
        return None
    return step.server_encode_p50_ms / step.server_p50_ms


def encoding_note(step: LoadStep) -> str:
    """`, 35% of it encoding the answer` where that share is over ENCODING_SHARE; else empty."""
    share = encoding_share(step)
    return f", {share:.0%} of it encoding the answer" if share is not None and share > ENCODING_SHARE else ""


def describe(step: LoadStep) -> str:
    return f"{step.offered_rps:g} req/s" if step.mode == "open" else f"{step.users} users"


def run_sweep(gen: Generator, endpoint: Endpoint, env: dict[str, str], mode: str, levels: list[float],
              rules: StepRules, say=None) -> tuple[list[LoadStep], str | None]:
    """The steps of one sweep, in order, up to the first that should stop it; and why it stopped."""
    steps = []
    for level in levels:
        step = measure_step(gen, endpoint, env, mode, level, rules, f"{mode}_{level:g}")
        steps.append(step)
        if say:
            p99 = f"{step.latency.p99_ms:.2f}" if step.latency else "-"
            server = f" (server {step.server_p50_ms:.2f} ms at p50{encoding_note(step)})" \
                if step.server_p50_ms is not None else ""
            if step.send_lag_p99_ms is not None:
                server += f", sent up to {step.send_lag_p99_ms:.2f} ms late at p99"
            say(f"    {mode} {describe(step)}: {step.throughput_rps:.0f} req/s, p99 {p99} ms{server}, "
                f"{step.failures} failures{'' if step.stable else ', unstable'}")
        reason = stop_reason(step, rules)
        if reason:
            return steps, reason
    return steps, None


def run_load(
    endpoint: Endpoint,
    requests: Requests,
    users: list[int],
    rates: list[float] | Callable[[float], list[float]],
    rules: StepRules,
    loadgen_cores: list[int] | None,
    server_cores: list[int] | None,
    server_threads: int,
    work_dir: Path,
    workers: int = 0,
    say=None,
    master: Master | None = None,
) -> LoadResult:
    """The closed-loop sweep over `users` and the open-loop sweep over `rates` against one served model.

    Latency samples are not kept in the result (a step at thousands of requests a second would bloat
    results.json); every request's record stays in `work_dir/*.samples.*.npz`, and Locust's own CSV
    statistics beside them. With `master`, the `workers` are `mcbench load-worker`s on other machines.
    """
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    env = requests.write(work_dir / "requests")
    env["MCBENCH_HEADERS"] = json.dumps(requests.headers)
    env["MCBENCH_CHECK_EVERY"] = str(rules.check_every if requests.expected else 0)
    gen = Generator(loadgen_cores, workers, work_dir, master=master)
    closed, closed_stop = run_sweep(gen, endpoint, env, "closed", [float(u) for u in users], rules, say)
    open_stop = None
    if callable(rates):  # rates as fractions of what the closed loop reached
        peak = max((s.throughput_rps for s in closed), default=0.0)
        rates = rates(peak)
        if not rates and peak > 0:
            open_stop = (f"not run: the closed loop's peak of {peak:.1f} req/s is too slow for an open step to expect "
                         f"{MIN_OPEN_ARRIVALS} arrivals (give --rates to run one anyway)")
    if rates:
        opened, open_stop = run_sweep(gen, endpoint, env, "open", rates, rules, say)
    else:
        opened = []
    every = closed + opened
    cpus = [s.loadgen_cpu_percent for s in every if s.loadgen_cpu_percent is not None]
    return LoadResult(
        steps=closed,
        server_cores=list(server_cores or []),
        loadgen_cores=list(loadgen_cores or []),
        cores_shared=not server_cores or not loadgen_cores or bool(set(server_cores) & set(loadgen_cores)),
        server_threads=server_threads,
        locust_total_requests=gen.totals[0],
        locust_total_failures=gen.totals[1],
        recorded_requests=gen.totals[2],
        loadgen_cpu_percent=max(cpus) if cpus else None,
        open_steps=opened,
        budget_p99_ms=rules.budget_p99_ms,
        stopped={k: v for k, v in (("closed", closed_stop), ("open", open_stop)) if v},
        locust_workers=workers,
        locust_master=f"{master.bind_host}:{master.bind_port}" if master else None,
        tolerance={"windows": rules.compare_last, "rps": rules.rps_tolerance, "p99": rules.p99_tolerance},
        checked=sum(s.checked for s in every),
        mismatches=sum(s.mismatches for s in every),
        answers=requests.answers,
        inputs=requests.inputs,
    )


def _tail(log: Path, chars: int = 1500) -> str:
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    return f"{text[-chars:]} (log: {log})" if text else f"no output (log: {log})"


def locust_totals(json_path: Path) -> tuple[int, int]:
    """Locust's own request and failure counts (its --json-file), as a cross-check of the records."""
    if not json_path.exists():
        return 0, 0
    entries = json.loads(json_path.read_text())
    return sum(e.get("num_requests", 0) for e in entries), sum(e.get("num_failures", 0) for e in entries)
