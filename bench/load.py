"""The load stage: Locust, in its own processes and on its own cores, drives a served model step by step.

This module never imports locust (importing it patches the process with gevent); it starts
`locust -f bench/locustfile.py` once a step (a master and N workers in distributed mode) and reads
back each process's per-request records and Locust's own totals. In distributed mode the workers send
their records to the master (Locust's custom messages), which writes them one file a worker; the workers
may be on other machines (`Master`: this machine runs only the master, `mcbench load-worker` the workers).
Each Locust process is started with one settings file (bench.load_settings); the records it writes back, and a
step's figures from them, are bench.load_records; the rules the sweeps run by, bench.load_plan's LoadPlan.

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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mcbench.bench.isolate import die_with_parent
from mcbench.bench.load_plan import MIN_OPEN_ARRIVALS, LoadPlan
from mcbench.bench.load_records import Records, step_from_records
from mcbench.bench.load_settings import ENV as SETTINGS_ENV
from mcbench.bench.load_settings import LoadSettings
from mcbench.bench.protocol import encode_infer_request
from mcbench.reports.schema import LoadResult, LoadStep

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_ALLOWANCE_S = 60.0
SAFETY_MARGIN_S = 30  # a run ends itself (the lone process, or the master once every worker reported);
# Locust's --run-time, this much longer, only catches a hang or a worker that died
SHORTFALL = 0.8  # open loop: achieved below this share of offered means the server cannot keep up
Rates = list[float] | Callable[[float], list[float]]  # given, or made from the closed loop's peak (LoadPlan.open_rates)
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

    def write(self, folder: Path, base: LoadSettings | None = None) -> LoadSettings:
        """Write the bodies (and expected outputs) for the locustfile; `base` pointing to them, with the headers."""
        folder.mkdir(parents=True, exist_ok=True)
        for i, body in enumerate(self.bodies):
            (folder / f"request_{i}.bin").write_bytes(body)
        expected = ""
        if self.expected:
            arrays = {f"{i}/{k}": np.asarray(o) for i, outs in enumerate(self.expected) for k, o in enumerate(outs)}
            np.savez(folder / "expected.npz", **arrays)
            expected = str(folder / "expected.npz")
        return replace(base or LoadSettings(), bodies=str(folder), expected=expected, headers=dict(self.headers))


@dataclass
class Generator:
    """Where and how Locust runs: its cores, and 0 (one process) or N distributed workers: local processes,
    or (with `master`) `mcbench load-worker`s on other machines."""

    cores: list[int] | None = None
    workers: int = 0
    work_dir: Path = Path(".")
    totals: list[int] = field(default_factory=lambda: [0, 0, 0])  # Locust's requests, failures; our rows
    master: Master | None = None

    def run(self, endpoint: Endpoint, settings: LoadSettings, user_class: str, users: int,
            run_s: int, tag: str) -> Records:
        """One Locust run; the merged records of its processes. A Locust that dies or hangs is a LoadError."""
        prefix = self.work_dir / tag
        for old in [*self.work_dir.glob(f"{tag}.samples.*.npz"), self.work_dir / f"{tag}.samples.workers.json"]:
            old.unlink(missing_ok=True)
        settings = replace(settings, samples=str(self.work_dir / f"{tag}.samples"), path=endpoint.infer_path,
                           headers={**settings.headers, **endpoint.headers})
        env = self._env(settings, f"{tag}.settings.json")
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
                procs += [self._start(worker, self._env(replace(settings, worker_name=f"local-{i}"),
                                                        f"{tag}.worker{i}.settings.json"),
                                      [cores[i % len(cores)]] if cores else None,
                                      self.work_dir / f"{tag}.worker{i}.log") for i in range(self.workers)]
        try:
            self._wait(procs, timeout, prefix)
        except LoadError:
            if self.workers and "Gave up waiting for workers" in _tail(log):
                raise LoadError(self._too_few_workers(tag, wait)) from None
            raise
        return self._collect(tag, prefix)

    def _env(self, settings: LoadSettings, name: str) -> dict[str, str]:
        """The environment of a Locust process that runs by `settings`, written to `name` in the work folder."""
        return {**os.environ, SETTINGS_ENV: str(settings.write(self.work_dir / name))}

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_step(gen: Generator, endpoint: Endpoint, settings: LoadSettings, mode: str, level: float,
                 rules: LoadPlan, tag: str) -> LoadStep:
    """Run one step, extending it (further runs of the same step) until its windows agree or the limit is hit."""
    run_s = rules.run_seconds
    records, spans, elapsed, offset, index = Records.empty(), [], 0.0, 0.0, 0
    grace = rules.CLOSED_GRACE_S if mode == "closed" else rules.OPEN_GRACE_S
    settings = replace(settings, seconds=float(run_s), grace_s=grace)
    if mode == "closed":
        users, user_class, offered = int(level), "ClosedLoopUser", None
    else:
        users, user_class, offered = max(gen.workers, 1), "OpenLoopUser", float(level)
        settings = replace(settings, rate=float(level), streams=users, arrivals=rules.arrivals)
    while True:
        length = run_s + math.ceil(grace)  # from the first user's start; Locust's own limit has a margin
        chunk = gen.run(endpoint, settings, user_class, users, length, f"{tag}_run{index}")
        records = records.merged(chunk, offset)
        spans.append((offset + rules.warmup_s, offset + run_s))
        elapsed += run_s
        offset += length + 1.0  # a gap between runs, so no window straddles two of them
        step = step_from_records(records, spans, users, mode, rules, offered)
        index += 1
        if step.stable or elapsed + run_s > rules.max_step_seconds:
            return step


def stop_reason(step: LoadStep, rules: LoadPlan) -> str | None:
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


def run_sweep(gen: Generator, endpoint: Endpoint, settings: LoadSettings, mode: str, levels: list[float],
              rules: LoadPlan, say=None) -> tuple[list[LoadStep], str | None]:
    """The steps of one sweep, in order, up to the first that should stop it; and why it stopped."""
    steps = []
    for level in levels:
        step = measure_step(gen, endpoint, settings, mode, level, rules, f"{mode}_{level:g}")
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


def run_load(endpoint: Endpoint, requests: Requests, users: list[int], rates: Rates, rules: LoadPlan,
             loadgen_cores: list[int] | None, server_cores: list[int] | None, server_threads: int, work_dir: Path,
             workers: int = 0, say=None, master: Master | None = None,
             settings: LoadSettings | None = None) -> LoadResult:
    """The closed-loop sweep over `users` and the open-loop sweep over `rates` against one served model, by
    `rules` (its budget_p99_ms is the one a sweep stops at).

    Latency samples are not kept in the result (a step at thousands of requests a second would bloat
    results.json); every request's record stays in `work_dir/*.samples.*.npz`, and Locust's own CSV
    statistics beside them. With `master`, the `workers` are `mcbench load-worker`s on other machines.
    `settings`: the Locust processes' own settings to start from (a benchmark's wake or yield_us); each step
    fills in the rest.
    """
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    base = requests.write(work_dir / "requests", settings)
    base = replace(base, check_every=rules.check_every if requests.expected else 0)
    gen = Generator(loadgen_cores, workers, work_dir, master=master)
    closed, closed_stop = run_sweep(gen, endpoint, base, "closed", [float(u) for u in users], rules, say)
    open_stop = None
    if callable(rates):  # rates as fractions of what the closed loop reached
        peak = max((s.throughput_rps for s in closed), default=0.0)
        rates = rates(peak)
        if not rates and peak > 0:
            open_stop = (f"not run: the closed loop's peak of {peak:.1f} req/s is too slow for an open step to expect "
                         f"{MIN_OPEN_ARRIVALS} arrivals (give --rates to run one anyway)")
    if rates:
        opened, open_stop = run_sweep(gen, endpoint, base, "open", rates, rules, say)
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
        tolerance={"windows": rules.COMPARE_LAST, "rps": rules.RPS_TOLERANCE, "p99": rules.P99_TOLERANCE},
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
