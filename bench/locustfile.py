"""The Locust test mcbench runs: the only module that imports locust (it patches the process with gevent).

Run by bench.load, one Locust run a load step, as `locust -f bench/locustfile.py --headless ...`
(or as a master and N `--worker` processes), with its settings in one file: bench.load_settings.LoadSettings,
whose path MCBENCH_LOAD_SETTINGS holds, read and checked once at start-up. Two user classes:
ClosedLoopUser (each user sends the next request when the previous one answered) and OpenLoopUser (each user
sends on a precomputed arrival schedule, whatever the answers). Records: a lone Locust process writes
SAMPLES.PID.npz when it quits; in distributed mode the master writes SAMPLES.wN.npz, one file a worker, and
SAMPLES.workers.json (`samples` of the settings).

Distributed mode (a master and workers, on this machine or on others): only the master is started with
the step's settings. Each worker asks the master for them when it connects (the custom message
"mcbench_hello", answered by "mcbench_setup": the settings, the request bodies and the offline outputs),
so a worker needs nothing but mcbench installed. At the end of the step each worker sends its rows to
the master ("mcbench_records"), which writes them one file a worker and ends the run once every worker
that took part has reported: the step's figures are computed over every worker's own requests, not
from Locust's rounded aggregate statistics. Each worker times from its own first user's start, so no
clock is compared across machines.

Why the open loop is built here rather than with Locust's constant_throughput: there, a late answer
delays the next send and the send that should have happened is never recorded (coordinated omission).
Here each request is a greenlet started at its scheduled time and timed from that time, so a server
that stalls is charged for every request that would have queued behind the stall.

Locust's own statistics round response times (whole milliseconds below 100 ms) and time from the
actual send; each request is also recorded here at perf_counter resolution.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import time
import zlib
from pathlib import Path

import gevent
import gevent.event
import gevent.pool
import numpy as np
from gevent import monkey
from locust import User, constant, events, task

from mcbench.bench.http_client import ConnectionPool, Origin, encode_post, parse_server_timing
from mcbench.bench.load_records import COLUMNS, check_answer, read_expected, save_records
from mcbench.bench.load_settings import LoadSettings, LoadSettingsError
from mcbench.bench.protocol import HEADER_LENGTH, answer_size_error

try:
    SETTINGS = LoadSettings.from_environment()  # a worker's step settings come later, from its master (_apply_setup)
except LoadSettingsError as exc:
    sys.exit(f"mcbench: {exc}")
YIELD_SHARE = 0.2  # of this process's time at most, spent yielding before sends
_native_sleep = monkey.get_original("time", "sleep")  # Locust patched time.sleep into gevent.sleep


def _bodies() -> list[bytes]:
    folder = SETTINGS.bodies
    if not folder:
        return [b""]
    return [p.read_bytes() for p in sorted(Path(folder).glob("request_*.bin"), key=lambda p: int(p.stem[8:]))]


BODIES = _bodies()
EXPECTED = read_expected(SETTINGS.expected) if SETTINGS.expected else []
_sent = itertools.count()

# one row a request, COLUMNS of them (bench.load_records says which)
_records: list[tuple[float, ...]] = []
NAN = float("nan")
_error_kinds: list[str] = [""]  # error code -> kind; 0 is "no error"
_clock: dict = {"t0": 0.0, "cpu0": 0.0, "started": False}
_in_flight: set[float] = set()  # starts of requests not yet answered
_schedules = [0]  # open loop: schedules still sending (a request spawned at its time may not be in _in_flight yet)


def _error_code(kind: str) -> int:
    if kind not in _error_kinds:
        _error_kinds.append(kind)
    return _error_kinds.index(kind)


_env: dict[str, object] = {}
# distributed mode. master: who connected, who took part in the step, their reports; worker: settings received
_dist: dict = {"ready": gevent.event.Event(), "connected": {}, "expected": None, "reports": {}, "closing": False}


def _worker_name() -> str:
    return SETTINGS.worker_name or f"{socket.gethostname()}-{os.getpid()}"


def _runner_kind(environment) -> str:
    return type(getattr(environment, "runner", None)).__name__


@events.init.add_listener
def _keep_environment(environment, **_kwargs) -> None:
    _env["environment"] = environment
    runner = environment.runner
    if _runner_kind(environment) == "MasterRunner":
        runner.register_message("mcbench_hello", _send_setup)
        runner.register_message("mcbench_records", _take_records)
        environment.events.worker_connect.add_listener(_on_worker_connect)
    elif _runner_kind(environment) == "WorkerRunner":
        runner.register_message("mcbench_setup", _apply_setup)
        gevent.spawn(_ask_for_setup, runner)


def _ask_for_setup(runner) -> None:
    """Worker: ask until the settings come (a hello sent while the master was still starting is lost)."""
    while not _dist["ready"].is_set():
        runner.send_message("mcbench_hello", {"name": _worker_name()})
        _dist["ready"].wait(2.0)


def _send_setup(environment, msg, **_kwargs) -> None:
    """Master: a worker's settings are this process's own; the worker may be on a machine without the model."""
    _dist["connected"][msg.node_id] = str((msg.data or {}).get("name") or msg.node_id)
    _write_status()
    setup = {"settings": SETTINGS.shared(), "bodies": BODIES,
             "expected": [[np.asarray(o, dtype=np.float64).tobytes() for o in outs] for outs in EXPECTED]}
    environment.runner.send_message("mcbench_setup", setup, client_id=msg.node_id)


def _apply_setup(environment, msg, **_kwargs) -> None:
    """Worker: the master's settings over this process's own (its name, its patience); bad ones end the worker."""
    global SETTINGS
    data = msg.data
    try:
        SETTINGS = SETTINGS.with_shared(data["settings"])
    except LoadSettingsError as exc:  # a master of another mcbench version
        raise SystemExit(f"mcbench: {exc}") from None
    globals()["BODIES"] = [bytes(b) for b in data["bodies"]] or [b""]
    globals()["EXPECTED"] = [[np.frombuffer(o, dtype=np.float64) for o in outs] for outs in data["expected"]]
    _dist["ready"].set()


def _on_worker_connect(client_id: str, **_kwargs) -> None:
    """Master: note the worker. One that connects once this run is ending is sent away: its `mcbench load-worker`
    starts it again, for the next step's master."""
    runner = _env["environment"].runner
    if _dist["closing"]:
        runner.send_message("quit", None, client_id=client_id)
        return
    _dist["connected"].setdefault(client_id, client_id)
    _write_status()


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    runner = environment.runner
    if _runner_kind(environment) == "MasterRunner":  # the workers the users are spread over must all report
        _dist["expected"] = {c.id for c in runner.clients.ready + runner.clients.spawning + runner.clients.running}
    elif _runner_kind(environment) == "WorkerRunner":
        gevent.spawn(_report_when_done, runner)


def _take_records(environment, msg, **_kwargs) -> None:
    """Master: keep a worker's rows; once every worker of the step has reported, end the run."""
    _dist["reports"][msg.node_id] = msg.data
    _dist["connected"].setdefault(msg.node_id, str(msg.data.get("name") or msg.node_id))
    expected = _dist["expected"]
    if expected is not None and expected <= set(_dist["reports"]) and not _dist["closing"]:
        _dist["closing"] = True
        gevent.spawn(environment.runner.quit)  # not from this greenlet: quitting kills the runner's greenlets


def _write_status() -> None:
    """Master: the workers connected so far, for mcbench's message when too few come."""
    if SETTINGS.samples:
        path = Path(f"{SETTINGS.samples}.workers.json")
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps({"connected": sorted(_dist["connected"].values())}))
        tmp.replace(path)


def _start_clock() -> None:
    """The step's clock starts with the first user, not with Locust (whose start-up can take seconds)."""
    if not _clock["started"]:
        _clock.update(t0=time.perf_counter(), cpu0=time.process_time(), started=True)
        gevent.spawn(_note_usage)
        runner = getattr(_env.get("environment"), "runner", None)
        if type(runner).__name__ == "LocalRunner":  # a worker cannot end the test: it reports, its master ends it
            gevent.spawn(_quit_when_done, runner)


def _note_usage() -> None:
    """Wall and CPU seconds over the step's sending time only (not the grace and shutdown, when it idles)."""
    gevent.sleep(max(_clock["t0"] + SETTINGS.seconds - time.perf_counter(), 0))
    _clock["usage"] = (time.perf_counter() - _clock["t0"], time.process_time() - _clock["cpu0"])


def _step_over() -> None:
    """Return once the step and its grace are over, or as soon as no request is still out after the step."""
    end = _clock["t0"] + SETTINGS.seconds
    last = end + SETTINGS.grace_s
    gevent.sleep(max(end - time.perf_counter(), 0))
    while (_in_flight or _schedules[0]) and time.perf_counter() < last:
        gevent.sleep(0.05)


def _quit_when_done(runner) -> None:
    """End the run once the step is over."""
    _step_over()
    runner.quit()


def _report_when_done(runner) -> None:
    """Worker: once the step and its grace are over (or at once, if the master gave this worker no user),
    send the rows to the master. Locust's own statistics go first, so the master's totals are complete."""
    begun = time.perf_counter()
    while not _clock["started"]:
        idle = runner.worker_state == "running" and runner.user_count == 0  # fewer users than workers
        if idle or time.perf_counter() - begun > SETTINGS.setup_wait_s + SETTINGS.seconds:
            break
        gevent.sleep(0.05)
    if _clock["started"]:
        _step_over()
    rows, usage = _rows() if _clock["started"] else (np.zeros((0, COLUMNS)), (0.0, 0.0))
    flush = getattr(runner, "_send_stats", None)
    if flush is not None:
        flush()
    runner.send_message("mcbench_records", {
        "name": _worker_name(), "rows": rows.tobytes(),
        "usage": list(usage), "error_kinds": list(_error_kinds)})


def _rows() -> tuple[np.ndarray, tuple[float, float]]:
    """This process's rows, requests still out marked unanswered; and its wall and CPU seconds."""
    wall = time.perf_counter() - _clock["t0"]
    usage = _clock.get("usage") or (wall, time.process_time() - _clock["cpu0"])
    unanswered = _error_code("no answer by the end of the step")
    rows = _records + [(t, wall - t, 0, unanswered, 0, NAN, NAN, NAN, NAN, NAN) for t in sorted(_in_flight)]
    return np.array(rows, dtype=np.float64).reshape(-1, COLUMNS), usage


@events.quitting.add_listener
def _write_records(environment, **_kwargs) -> None:
    kind = _runner_kind(environment)
    samples = SETTINGS.samples
    if not samples or kind == "WorkerRunner" or environment.runner is None:  # a worker's rows went to its master
        return
    if kind == "MasterRunner":
        named: dict[str, dict] = {}
        for client_id, report in sorted(_dist["reports"].items(), key=lambda item: str(item[1].get("name"))):
            name = str(report.get("name") or client_id)
            named[name if name not in named else f"{name}@{client_id}"] = report  # two workers given one name
        for i, (name, report) in enumerate(named.items()):
            rows = np.frombuffer(report["rows"], dtype=np.float64).reshape(-1, COLUMNS)
            save_records(Path(f"{samples}.w{i}.npz"), rows, report["usage"], report["error_kinds"], name)
        return
    rows, usage = _rows()
    save_records(Path(f"{samples}.{os.getpid()}.npz"), rows, usage, _error_kinds)


class _Inference(User):
    """Sends the step's pre-encoded requests on its own keep-alive connections (bench.http_client: Locust's
    FastHttpSession cost 0.2 ms a request more, all of it in the latency recorded)."""

    abstract = True
    connections = 256  # one user's at most: the open loop sends while earlier requests are out
    wait_time = constant(0)

    def on_start(self) -> None:
        wait = SETTINGS.setup_wait_s
        if _runner_kind(_env.get("environment")) == "WorkerRunner" and not _dist["ready"].wait(wait):
            raise RuntimeError(f"no settings from the master within {wait:g} s")
        origin = Origin.parse(self.host)
        self.requests = [encode_post(origin, SETTINGS.path, SETTINGS.headers, body) for body in BODIES]
        self.pool = ConnectionPool(origin, self.connections, SETTINGS.request_timeout_s)
        _start_clock()

    def on_stop(self) -> None:
        self.pool.close()

    def send(self, start: float, scheduled: bool = False) -> None:
        """One request, timed from `start` (its real start in the closed loop, its `scheduled` one in the open)."""
        number = next(_sent)
        index = number % len(BODIES)
        key = start - _clock["t0"]
        _in_flight.add(key)
        try:
            self._send(start, number, index, scheduled)
        finally:
            _in_flight.discard(key)

    def _send(self, start: float, number: int, index: int, scheduled: bool) -> None:
        lag = time.perf_counter() - start if scheduled else NAN  # the generator's own lateness, charged to the server
        answer, error = None, None
        try:
            answer = self.pool.exchange(self.requests[index])
        except OSError as e:  # refused, reset, timed out, TLS, or not HTTP this client reads (ProtocolError)
            error = e
        latency = time.perf_counter() - start
        status = answer.status if answer else 0
        kind = "" if status == 200 else f"HTTP {status}" if status else type(error).__name__
        check, binary = 0, NAN
        if status == 200:
            length = answer.headers.get(HEADER_LENGTH.lower())
            binary = float(length is not None)
            kind = answer_size_error(answer.body, length) or ""  # binary data that does not add up is no answer
            every = SETTINGS.check_every
            if every and EXPECTED and number % every == 0:
                check = check_answer(answer.body, length, EXPECTED[index % len(EXPECTED)])
        timing = parse_server_timing(answer.headers.get("server-timing", "")) if answer else {}
        _records.append((start - _clock["t0"], latency, status, _error_code(kind), check,
                         timing.get("model", NAN), timing.get("app", NAN), lag, timing.get("encode", NAN), binary))
        self.environment.events.request.fire(  # Locust's own statistics and counts
            request_type="POST", name=SETTINGS.path, response_time=latency * 1000, response=answer, context={},
            response_length=len(answer.body) if answer else 0, exception=RuntimeError(kind) if kind else None)


class ClosedLoopUser(_Inference):
    """Closed loop: send the next request as soon as the previous one answered."""

    @task
    def infer(self) -> None:
        if time.perf_counter() - _clock["t0"] >= SETTINGS.seconds:  # the step is over: no request may straddle its end
            gevent.sleep(3600)
            return
        self.send(time.perf_counter())


def arrival_times(rate: float, seconds: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Scheduled send times in [0, seconds) for one stream at `rate` a second."""
    if rate <= 0:
        return np.zeros(0)
    if kind == "constant":
        return np.arange(rng.uniform(0, 1 / rate), seconds, 1 / rate)
    gaps = rng.exponential(1 / rate, size=int(rate * seconds * 1.5 + 50))
    times = np.cumsum(gaps)
    while times[-1] < seconds:  # rare: the draw ran short
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1 / rate, size=len(times)))])
    return times[times < seconds]


def sleep_until(when: float, stretch: float = 0.0) -> None:
    """Return at `when` (perf_counter seconds), letting other greenlets run meanwhile.

    An open-loop request is timed from its scheduled start, so however late the generator wakes for it is charged to
    the server. The event loop's own timer (gevent.sleep) waits in epoll with whole milliseconds plus a millisecond
    of slack: it woke 0.6-1.0 ms late at the median on this machine, whatever the wait (benchmarks/truth.py). Here a
    native thread of the hub's pool sleeps (nanosleep) until `stretch` seconds before `when` and wakes the loop,
    which was 0.12-0.27 ms late at the median on its own; the last stretch is spent yielding to the other greenlets
    (gevent.sleep(0)) until the time comes: 0.07 ms late at the median, for the CPU of that stretch (RESULTS.md)."""
    delay = when - time.perf_counter()
    if delay <= 0:
        return
    if SETTINGS.wake == "loop":
        gevent.sleep(delay)
        return
    if delay > stretch:
        gevent.get_hub().threadpool.apply(_native_sleep, (delay - stretch,))
    while time.perf_counter() < when:
        gevent.sleep(0)


def yield_stretch(rate: float) -> float:
    """How long before each send to stop sleeping and yield: at most the settings' yield_us, and short enough that
    this process, sending `rate` requests a second, spends at most YIELD_SHARE of its time yielding."""
    return min(SETTINGS.yield_us / 1e6, YIELD_SHARE / rate) if rate > 0 else 0.0


class OpenLoopUser(_Inference):
    """Open loop: one greenlet per scheduled request, each timed from its scheduled send time."""

    @task
    def follow_schedule(self) -> None:
        name, rate, streams = SETTINGS.worker_name, SETTINGS.rate, SETTINGS.streams
        seed = [os.getpid(), id(self) & 0xFFFFFFFF] + ([zlib.crc32(name.encode())] if name else [])
        rng = np.random.default_rng(seed)  # workers in containers may share a pid: their name tells them apart
        group = gevent.pool.Group()
        dropped = _error_code("load generator backlog")
        _schedules[0] += 1
        try:
            for offset in arrival_times(rate / streams, SETTINGS.seconds, SETTINGS.arrivals, rng):
                start = _clock["t0"] + float(offset)
                sleep_until(start, yield_stretch(rate * _schedules[0] / streams))
                if len(_in_flight) >= SETTINGS.max_in_flight:
                    _records.append((float(offset), 0.0, 0, dropped, 0, NAN, NAN, NAN, NAN, NAN))
                    continue
                group.spawn(self.send, start, True)
            group.join()
        finally:
            _schedules[0] -= 1
        while True:  # the schedule is done: wait for the step to end rather than start it again
            gevent.sleep(3600)
