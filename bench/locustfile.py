"""The Locust test mcbench runs: the only module that imports locust (it patches the process with gevent).

Run by bench.load, one Locust run a load step, as `locust -f bench/locustfile.py --headless ...`
(or as a master and N `--worker` processes), with its settings in the environment:

  user class         ClosedLoopUser: each user sends the next request when the previous one answered;
                     OpenLoopUser: each user sends on a precomputed arrival schedule, whatever the answers
  MCBENCH_RATE       open loop: total requests a second over all users of all workers
  MCBENCH_STREAMS    open loop: how many users share that rate (Locust's --users)
  MCBENCH_ARRIVALS   open loop: "poisson" (exponential gaps) or "constant"
  MCBENCH_WAKE       open loop: how a user waits for a scheduled send: "thread" (default; a native thread's
                     nanosleep, then the last stretch yielding to the event loop) or "loop" (the event loop's
                     timer, which wakes up to ms late; to compare)
  MCBENCH_YIELD_US   open loop, "thread": the longest last stretch before a send spent yielding (default 400;
                     0: none); it is shortened so that yielding takes at most a fifth of this process's time
  MCBENCH_SECONDS    how long the step runs from the first user's start (Locust's --run-time adds a grace)
  MCBENCH_BODIES     a directory of pre-encoded requests request_0.bin ... (sent in turn)
  MCBENCH_EXPECTED   optional .npz: the offline outputs for those requests ("i/k" = request i, output k)
  MCBENCH_CHECK_EVERY  check every Nth answer against MCBENCH_EXPECTED (0: never)
  MCBENCH_HEADERS    JSON headers; MCBENCH_PATH the URL path
  MCBENCH_SAMPLES    path prefix: a lone Locust process writes PREFIX.PID.npz when it quits; in distributed
                     mode the master writes PREFIX.wN.npz, one file a worker, and PREFIX.workers.json
  MCBENCH_WORKER_NAME  distributed: this worker's name in the records (`mcbench load-worker` sets it)

Distributed mode (a master and workers, on this machine or on others): only the master is started with
these settings. Each worker asks the master for them when it connects (the custom message
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
from mcbench.bench.protocol import HEADER_LENGTH, answer_size_error, decode_infer_response

RATE = float(os.environ.get("MCBENCH_RATE", "0"))
STREAMS = max(1, int(os.environ.get("MCBENCH_STREAMS", "1")))
ARRIVALS = os.environ.get("MCBENCH_ARRIVALS", "poisson")
SECONDS = float(os.environ.get("MCBENCH_SECONDS", "1"))
HEADERS = json.loads(os.environ.get("MCBENCH_HEADERS", "{}"))
PATH = os.environ.get("MCBENCH_PATH", "/")
SAMPLES = os.environ.get("MCBENCH_SAMPLES", "")
CHECK_EVERY = int(os.environ.get("MCBENCH_CHECK_EVERY", "0"))
MAX_IN_FLIGHT = int(os.environ.get("MCBENCH_MAX_IN_FLIGHT", "2000"))  # per user; beyond it the generator is the limit
GRACE_S = float(os.environ.get("MCBENCH_GRACE_S", "1"))
REQUEST_TIMEOUT_S = float(os.environ.get("MCBENCH_REQUEST_TIMEOUT_S", "30"))
WORKER_NAME = os.environ.get("MCBENCH_WORKER_NAME", "")
WAKE = os.environ.get("MCBENCH_WAKE", "thread")
YIELD_S = float(os.environ.get("MCBENCH_YIELD_US", "400")) / 1e6
YIELD_SHARE = 0.2  # of this process's time at most, spent yielding before sends
SETUP_WAIT_S = float(os.environ.get("MCBENCH_SETUP_WAIT_S", "60"))  # a worker's users wait this long for the settings
_native_sleep = monkey.get_original("time", "sleep")  # Locust patched time.sleep into gevent.sleep
RTOL, ATOL = 1e-3, 1e-4  # a served answer matches the offline one within these (same runtime, same settings)


def _bodies() -> list[bytes]:
    folder = os.environ.get("MCBENCH_BODIES")
    if not folder:
        return [b""]
    return [p.read_bytes() for p in sorted(Path(folder).glob("request_*.bin"), key=lambda p: int(p.stem[8:]))]


def _expected() -> list[list[np.ndarray]]:
    path = os.environ.get("MCBENCH_EXPECTED")
    if not path:
        return []
    with np.load(path) as data:
        keys = sorted(data.files, key=lambda k: tuple(map(int, k.split("/"))))
        out: dict[int, list[np.ndarray]] = {}
        for key in keys:
            out.setdefault(int(key.split("/")[0]), []).append(data[key].reshape(-1))
    return [out[i] for i in sorted(out)]


BODIES = _bodies()
EXPECTED = _expected()
_sent = itertools.count()

# one row a request: start (s since this process began the test; for the open loop the *scheduled*
# start), latency (s, from that start), HTTP status (0: none), error code (a 200 whose binary data does not add
# up has one), check (0 none, 1 match, 2 mismatch), the server's own model and handler times by its Server-Timing
# header (ms; NaN where it sent none), in the open loop how late the generator began the request after its
# scheduled start (s; NaN in the closed loop), the server's encoding time (ms, Server-Timing; NaN where none),
# and whether the answer came as binary data (1) or JSON (0; NaN: no answer)
COLUMNS = 10
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
_SETTINGS = ("RATE", "STREAMS", "ARRIVALS", "SECONDS", "HEADERS", "PATH", "CHECK_EVERY", "MAX_IN_FLIGHT", "GRACE_S",
             "REQUEST_TIMEOUT_S")


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
        runner.send_message("mcbench_hello", {"name": WORKER_NAME or f"{socket.gethostname()}-{os.getpid()}"})
        _dist["ready"].wait(2.0)


def _send_setup(environment, msg, **_kwargs) -> None:
    """Master: a worker's settings are this process's own; the worker may be on a machine without the model."""
    _dist["connected"][msg.node_id] = str((msg.data or {}).get("name") or msg.node_id)
    _write_status()
    setup = {"settings": {k: globals()[k] for k in _SETTINGS}, "bodies": BODIES,
             "expected": [[np.asarray(o, dtype=np.float64).tobytes() for o in outs] for outs in EXPECTED]}
    environment.runner.send_message("mcbench_setup", setup, client_id=msg.node_id)


def _apply_setup(environment, msg, **_kwargs) -> None:
    data = msg.data
    globals().update({k: v for k, v in data["settings"].items() if k in _SETTINGS})
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
    if SAMPLES:
        path = Path(f"{SAMPLES}.workers.json")
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
    gevent.sleep(max(_clock["t0"] + SECONDS - time.perf_counter(), 0))
    _clock["usage"] = (time.perf_counter() - _clock["t0"], time.process_time() - _clock["cpu0"])


def _step_over() -> None:
    """Return once the step and its grace are over, or as soon as no request is still out after the step."""
    end, last = _clock["t0"] + SECONDS, _clock["t0"] + SECONDS + GRACE_S
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
        if idle or time.perf_counter() - begun > SETUP_WAIT_S + SECONDS:
            break
        gevent.sleep(0.05)
    if _clock["started"]:
        _step_over()
    rows, usage = _rows() if _clock["started"] else (np.zeros((0, COLUMNS)), (0.0, 0.0))
    flush = getattr(runner, "_send_stats", None)
    if flush is not None:
        flush()
    runner.send_message("mcbench_records", {
        "name": WORKER_NAME or f"{socket.gethostname()}-{os.getpid()}", "rows": rows.tobytes(),
        "usage": list(usage), "error_kinds": list(_error_kinds)})


def _rows() -> tuple[np.ndarray, tuple[float, float]]:
    """This process's rows, requests still out marked unanswered; and its wall and CPU seconds."""
    wall = time.perf_counter() - _clock["t0"]
    usage = _clock.get("usage") or (wall, time.process_time() - _clock["cpu0"])
    unanswered = _error_code("no answer by the end of the step")
    rows = _records + [(t, wall - t, 0, unanswered, 0, NAN, NAN, NAN, NAN, NAN) for t in sorted(_in_flight)]
    return np.array(rows, dtype=np.float64).reshape(-1, COLUMNS), usage


def _save(path: Path, rows: np.ndarray, usage, kinds: list[str], worker: str | None = None) -> None:
    tmp = path.with_suffix(".part.npz")
    extra = {"worker": np.array(worker, dtype=str)} if worker is not None else {}
    np.savez(tmp, records=rows, usage=np.array(usage, dtype=np.float64), error_kinds=np.array(kinds, dtype=str),
             **extra)
    tmp.replace(path)


@events.quitting.add_listener
def _write_records(environment, **_kwargs) -> None:
    kind = _runner_kind(environment)
    if not SAMPLES or kind == "WorkerRunner" or environment.runner is None:  # a worker's rows went to its master
        return
    if kind == "MasterRunner":
        named: dict[str, dict] = {}
        for client_id, report in sorted(_dist["reports"].items(), key=lambda item: str(item[1].get("name"))):
            name = str(report.get("name") or client_id)
            named[name if name not in named else f"{name}@{client_id}"] = report  # two workers given one name
        for i, (name, report) in enumerate(named.items()):
            rows = np.frombuffer(report["rows"], dtype=np.float64).reshape(-1, COLUMNS)
            _save(Path(f"{SAMPLES}.w{i}.npz"), rows, report["usage"], report["error_kinds"], name)
        return
    rows, usage = _rows()
    _save(Path(f"{SAMPLES}.{os.getpid()}.npz"), rows, usage, _error_kinds)


def _check(content: bytes | None, header_length: str | None, index: int) -> int:
    """1 when the answer's outputs (JSON or binary data) match the offline outputs for the same request, else 2."""
    try:
        outputs = decode_infer_response(content or b"", header_length)
        got = [np.asarray(o, dtype=np.float64).reshape(-1) for o in outputs.values()]
    except (ValueError, KeyError, TypeError):
        return 2
    want = EXPECTED[index]
    # the offline record may hold only the first outputs: those present are compared
    same = len(got) >= len(want) and all(g.shape == w.shape and np.allclose(g, w, rtol=RTOL, atol=ATOL)
                                         for g, w in zip(got, want, strict=False))
    return 1 if same else 2


class _Inference(User):
    """Sends the step's pre-encoded requests on its own keep-alive connections (bench.http_client: Locust's
    FastHttpSession cost 0.2 ms a request more, all of it in the latency recorded)."""

    abstract = True
    connections = 256  # one user's at most: the open loop sends while earlier requests are out
    wait_time = constant(0)

    def on_start(self) -> None:
        if _runner_kind(_env.get("environment")) == "WorkerRunner" and not _dist["ready"].wait(SETUP_WAIT_S):
            raise RuntimeError(f"no settings from the master within {SETUP_WAIT_S:g} s")
        origin = Origin.parse(self.host)
        self.requests = [encode_post(origin, PATH, HEADERS, body) for body in BODIES]
        self.pool = ConnectionPool(origin, self.connections, REQUEST_TIMEOUT_S)
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
            if CHECK_EVERY and EXPECTED and number % CHECK_EVERY == 0:
                check = _check(answer.body, length, index % len(EXPECTED))
        timing = parse_server_timing(answer.headers.get("server-timing", "")) if answer else {}
        _records.append((start - _clock["t0"], latency, status, _error_code(kind), check,
                         timing.get("model", NAN), timing.get("app", NAN), lag, timing.get("encode", NAN), binary))
        self.environment.events.request.fire(  # Locust's own statistics and counts
            request_type="POST", name=PATH, response_time=latency * 1000, response=answer, context={},
            response_length=len(answer.body) if answer else 0, exception=RuntimeError(kind) if kind else None)


class ClosedLoopUser(_Inference):
    """Closed loop: send the next request as soon as the previous one answered."""

    @task
    def infer(self) -> None:
        if time.perf_counter() - _clock["t0"] >= SECONDS:  # the step is over: no request may straddle its end
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
    if WAKE == "loop":
        gevent.sleep(delay)
        return
    if delay > stretch:
        gevent.get_hub().threadpool.apply(_native_sleep, (delay - stretch,))
    while time.perf_counter() < when:
        gevent.sleep(0)


def yield_stretch(rate: float) -> float:
    """How long before each send to stop sleeping and yield: at most YIELD_S, and short enough that this process,
    sending `rate` requests a second, spends at most YIELD_SHARE of its time yielding."""
    return min(YIELD_S, YIELD_SHARE / rate) if rate > 0 else 0.0


class OpenLoopUser(_Inference):
    """Open loop: one greenlet per scheduled request, each timed from its scheduled send time."""

    @task
    def follow_schedule(self) -> None:
        seed = [os.getpid(), id(self) & 0xFFFFFFFF] + ([zlib.crc32(WORKER_NAME.encode())] if WORKER_NAME else [])
        rng = np.random.default_rng(seed)  # workers in containers may share a pid: their name tells them apart
        group = gevent.pool.Group()
        dropped = _error_code("load generator backlog")
        _schedules[0] += 1
        try:
            for offset in arrival_times(RATE / STREAMS, SECONDS, ARRIVALS, rng):
                start = _clock["t0"] + float(offset)
                sleep_until(start, yield_stretch(RATE * _schedules[0] / STREAMS))
                if len(_in_flight) >= MAX_IN_FLIGHT:
                    _records.append((float(offset), 0.0, 0, dropped, 0, NAN, NAN, NAN, NAN, NAN))
                    continue
                group.spawn(self.send, start, True)
            group.join()
        finally:
            _schedules[0] -= 1
        while True:  # the schedule is done: wait for the step to end rather than start it again
            gevent.sleep(3600)
