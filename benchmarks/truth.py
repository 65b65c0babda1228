"""Known service time: does mcbench measure what is there?

A model that busy-waits a set number of microseconds (`mcbench.bench.calibration.spinner`) is measured
the ways mcbench measures every variant: in-process (`bench.latency.measure_latency`, the timer every run
uses), and over HTTP from mcbench's own model server under Locust (`bench.load.run_load`) in a closed loop
of one user and in an open loop at half of that loop's throughput, with constant and with Poisson arrivals.
Per set time it prints:

- in-process, the instrument check: blocks of a bare `perf_counter_ns` loop around the busy-wait itself,
  interleaved with blocks of mcbench's timer around a stand-in session whose run() is that busy-wait and nothing
  else, so both see the same machine; their p50 and p99 against the set time. The bare loop's error is the
  machine's (preemption, interrupts); what mcbench's timer reads beyond it is the instrument's. Beside them, the
  same two timers around the torch spinner session: what a real session's call path (torch, numpy) adds, which
  is part of that model's service time, not an error of the timer.
- over HTTP (the served call: the torch spinner with no wait of its own, then the server's `--spin-ms` test
  hook's busy-wait, so the set time is set outside torch), in `--rounds` rounds against one server; figures are
  medians over the rounds, and every comparison is taken within a round, side by side:
- the closed loop of one user against a reference: a raw-socket HTTP client of the same server (the load
  generator's own connection, without Locust or gevent) alternating with Locust in each round. The criterion:
  Locust's p50 recovers the raw client's + Locust's own client cost (measured the same way at 0 us), i.e. the
  set time + the HTTP overhead at that set time, measured independently. Beside it, the set time + the overhead
  measured at 0 us, and a bare socket server with the same busy-wait: on this VM the overhead grows with the
  wait for any client, even the bare socket (an idle core wakes slower after a longer wait), so an overhead
  measured at 0 us does not hold at 10 ms (RESULTS.md); also each answer's Server-Timing header, which splits
  the server's side into the model call and the handler's time beyond it, and the server's own request-path
  code (decode a request, encode an answer) timed in process right after a busy-wait and back to back;
- the open loop with constant arrivals at half the closed loop's throughput: nothing queues by construction,
  so its p99 should stay within 2x of the closed loop's (the issue's criterion); as mcbench runs it, on the event
  loop's own timer (which wakes up to a millisecond late and charged that to the server:
  bench.locustfile.sleep_until), and the reference: the raw client on the same schedule, spinning to each send
  so it is never late, timing each request from its scheduled time. What the reference reads over its own
  closed loop is the server's and the machine's (a server idle between requests answers slower), not the
  generator's;
- the open loop with Poisson arrivals at the same rate: requests do queue (an M/G/1 queue at utilisation
  about 0.5), so its p99 is held against what a queue fed the same arrivals predicts, with service times
  drawn from the closed loop's own latencies (a Lindley-recursion simulation, `queue_sojourn`). Coordinated
  omission (a generator that waits for late answers and does not charge the wait) would read far BELOW the
  prediction; a ratio near 1 says every queued request was charged.

Not benchmarks.harness (the interleaved rounds the model benchmarks use): what is measured here is the timers
themselves (a bare loop against mcbench's timer, Locust against a raw client), so each keeps its own clock, in
blocks side by side; the harness would be a third timer around them.

    python -m benchmarks.truth [--service-us 500,2000,10000] [--seconds 5] [--rounds 3] [--in-process-seconds 3]
                               [--no-http] [--json out.json]

Run it on a quiet machine: a busy-wait shares the core with whatever else runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.bench.calibration import spin, spinner_artifact
from mcbench.bench.latency import TimingPlan, measure_latency
from mcbench.optimizer.targets import Target, open_session

# the open loops: (key, arrivals, how the generator waits for a send); "loop" is the event loop's own timer, which
# mcbench used before and which wakes up to a millisecond late: the row beside the default shows what that cost
OPEN_LOOPS = (("constant", "constant", "thread"), ("constant_loop_timer", "constant", "loop"),
              ("poisson", "poisson", "thread"))
BLOCK = 50  # calls a block; the bare loop and mcbench's timer alternate block by block
SIDES = ("bare", "mcbench", "session", "torch")  # in_process's four ways of timing, in the order they run


def pct(values: Iterable[float] | np.ndarray, q: float) -> float:
    values = values if isinstance(values, np.ndarray) else list(values)
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


class SpinSession:
    """A stand-in session whose run() is the busy-wait and nothing else: its service time is set by construction, so
    what mcbench's timer reads over the set time is the instrument's error (and the machine's)."""

    input_names = ["x"]
    output_names: list[str] = []

    def __init__(self, service_us: float) -> None:
        self.service_us = service_us

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        spin(self.service_us)
        return []


def timed_block(session: Any, feeds: dict[str, Any]) -> list[float]:
    """BLOCK calls of `session` by mcbench's own timer (bench.latency.measure_latency), in microseconds."""
    plan = TimingPlan(warmup_runs=0, min_runs=BLOCK, min_seconds=1e-6, max_seconds=1e-6, settle_tolerance=1e9)
    return measure_latency(session, feeds, plan)[0].samples_us


def in_process(service_us: float, seconds: float, folder: Path) -> dict[str, Any]:
    """The instrument check, alternating in blocks of BLOCK calls for `seconds`:
    - bare: a bare perf_counter_ns loop around spin() itself (the machine's error alone);
    - mcbench: mcbench's timer around the stand-in session whose run() is that spin (the criterion: the set time);
    - session: the bare loop around the torch spinner session's run() (the model's call path: torch, numpy);
    - torch: mcbench's timer around that torch session (what a run records for it).
    Their samples in microseconds."""
    torch_session = open_session(spinner_artifact(service_us, folder), Target("torch", threads=1))
    stand_in = SpinSession(service_us)
    feeds = {"x": np.zeros((1, 4), np.float32)}
    for _ in range(20):
        torch_session.run(feeds)
    out: dict[str, list[float]] = {side: [] for side in SIDES}
    clock = time.perf_counter_ns
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(out["torch"]) < 2 * BLOCK:
        for _ in range(BLOCK):
            t0 = clock()
            spin(service_us)
            out["bare"].append((clock() - t0) / 1e3)
        out["mcbench"] += timed_block(stand_in, feeds)
        for _ in range(BLOCK):
            t0 = clock()
            torch_session.run(feeds)
            out["session"].append((clock() - t0) / 1e3)
        out["torch"] += timed_block(torch_session, feeds)
    return {f"{side}_us": v for side, v in out.items()}


def queue_sojourn(service_s: np.ndarray, rate: float, arrivals: str, n: int = 200_000, seed: int = 0) -> np.ndarray:
    """Sojourn times (wait + service) of `n` requests through one FIFO server fed `arrivals` ("poisson" or
    "constant") at `rate` a second, each service time drawn from `service_s`: the Lindley recursion
    W[k+1] = max(0, W[k] + S[k] - A[k+1])."""
    rng = np.random.default_rng(seed)
    service = rng.choice(np.asarray(service_s, dtype=np.float64), size=n)
    gaps = rng.exponential(1 / rate, size=n) if arrivals == "poisson" else np.full(n, 1 / rate)
    wait = np.empty(n)
    w = 0.0
    for k in range(n):
        wait[k] = w
        w = max(0.0, w + service[k] - gaps[k])
    return wait + service


def step_latencies(work_dir: Path, tag: str, warmup_s: float, seconds: float) -> np.ndarray:
    """The successful requests' latencies (s) of one step's measured span, from the generator's own records."""
    from mcbench.bench.load import Records

    out = []
    for path in sorted(work_dir.glob(f"{tag}_run0.samples.*.npz")):
        r = Records.load(path)
        out.append(r.latency_s[(r.status == 200) & (r.start_s >= warmup_s) & (r.start_s < seconds)])
    return np.concatenate(out) if out else np.zeros(0)


def spinner_spec(folder: Path, tag: str = "") -> Path:
    """A model server spec for the torch spinner with no busy-wait of its own: the server's --spin-ms test hook sets
    the service time, a busy-wait whose end is set when it starts, outside torch (whose call path costs more around a
    longer forward: RESULTS.md)."""
    spec = folder / f"server-{tag}.json"
    spec.write_text(json.dumps({"name": "spinner", "artifact": spinner_artifact(0.0, folder).to_dict(),
                                "target": Target("torch", threads=1).to_dict()}))
    return spec


def over_http(service_us: float, seconds: float, folder: Path, cores: list[int], rounds: int, loops: bool = True,
              inline_below_ms: float | None = None) -> dict[str, Any]:
    """`rounds` rounds against one server, each: the raw client's closed loop and Locust's closed loop of one user
    (which goes first alternates round by round); with `loops`, then the raw client's open loop and Locust's open
    loops (OPEN_LOOPS), all at half the first closed loop's throughput. Each figure is a list, one item a round."""
    from mcbench.bench.launcher import serve_in_subprocess
    from mcbench.bench.load import Endpoint, Requests, run_load
    from mcbench.bench.load_plan import UNBOUNDED_P99_MS, LoadPlan
    from mcbench.bench.load_settings import LoadSettings

    tag = f"{int(service_us)}us-{inline_below_ms}"
    spec = spinner_spec(folder, tag)
    requests = Requests.encode([{"x": np.zeros((1, 4), np.float32)}])  # one request, sent by every client here
    server_cores, gen_cores = cores[:1], cores[-1:]
    extra = ["--inline-below-ms", f"{inline_below_ms:g}"] if inline_below_ms is not None else []
    extra += ["--spin-ms", f"{service_us / 1000:g}"] if service_us else []
    warmup = 1.0
    out: dict[str, Any] = {"closed": [], "raw": [], "closed_latency_s": [], "raw_open": []}
    out.update({key: [] for key, _, _ in OPEN_LOOPS})
    with serve_in_subprocess(spec, server_cores, extra=extra) as server:
        endpoint = Endpoint(server.url, "spinner")
        out["dispatch"] = server.dispatch
        rules = LoadPlan(step_seconds=seconds, warmup_s=warmup, max_step_seconds=seconds, check_every=0,
                         budget_p99_ms=UNBOUNDED_P99_MS)
        for i in range(rounds):
            work = folder / f"closed-{tag}-{i}"
            if i % 2 == 0:
                out["raw"].append(raw_http(server.port, requests, seconds / 2, gen_cores[0]))
            out["closed"].append(run_load(endpoint, requests, [1], [], rules, gen_cores, server_cores, 1,
                                          work).steps[0])
            out["closed_latency_s"].append(step_latencies(work, "closed_1", warmup, rules.run_seconds))
            if i % 2 == 1:
                out["raw"].append(raw_http(server.port, requests, seconds / 2, gen_cores[0]))
            if not loops:
                continue
            rate = out.setdefault("rate", max(1.0, round(out["closed"][0].throughput_rps / 2, 1)))
            out["raw_open"].append(raw_http(server.port, requests, seconds - warmup, gen_cores[0], rate))
            for key, arrivals, wake in OPEN_LOOPS:
                wakes = LoadSettings(wake=wake)  # how the generator waits for a send (bench.locustfile.sleep_until)
                out[key].append(run_load(endpoint, requests, [], [rate], replace(rules, arrivals=arrivals), gen_cores,
                                         server_cores, 1, folder / f"{key}-{tag}-{i}", settings=wakes).open_steps[0])
    return out


REQUEST_BYTES, ANSWER = 64, b"x" * 32  # the bare reference's fixed-size request and answer


def bare_server(ready: Any, service_us: float, core: int) -> None:
    """A blocking socket server on `core`: read a request, busy-wait, answer; nothing else (a child process)."""
    import socket

    os.sched_setaffinity(0, {core})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    ready.put(listener.getsockname()[1])
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        got = b""
        while len(got) < REQUEST_BYTES:
            chunk = conn.recv(REQUEST_BYTES - len(got))
            if not chunk:
                return
            got += chunk
        spin(service_us)
        conn.sendall(ANSWER)


def bare_client(port: int, seconds: float, core: int) -> list[float]:
    """Latencies (ms) of one client on `core` sending to bare_server back to back for `seconds` (a child process)."""
    import socket

    os.sched_setaffinity(0, {core})
    conn = socket.create_connection(("127.0.0.1", port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        conn.sendall(b"r" * REQUEST_BYTES)
        got = 0
        while got < len(ANSWER):
            got += len(conn.recv(len(ANSWER)))
        out.append((time.perf_counter_ns() - t0) / 1e6)
    conn.close()
    return out[20:]  # the first calls warm the path up


def bare_p50_ms(service_us: float, seconds: float, cores: list[int]) -> float:
    """The p50 of a bare socket server busy-waiting `service_us`, server and client on the cores mcbench's load test
    uses: what the machine itself adds over the set time, the HTTP rows' reference."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    server = ctx.Process(target=bare_server, args=(ready, service_us, cores[0]), daemon=True)
    server.start()
    try:
        with ctx.Pool(1) as pool:
            latencies = pool.apply(bare_client, (ready.get(timeout=30), seconds, cores[-1]))
    finally:
        server.terminate()
        server.join()
    return float(np.median(latencies))


def outside_model_p50_ms(raw: dict[str, list[float]]) -> float:
    """The p50 of the server's handler time beyond the model call, answer by answer (Server-Timing app - model)."""
    return pct(np.array(raw["app"]) - np.array(raw["model"]), 50)


def row_of(service_us: float, inproc: dict[str, Any] | None, http: dict[str, Any] | None,
           overhead_ms: dict[str, float]) -> dict[str, Any]:
    set_ms = service_us / 1000
    row: dict[str, Any] = {"set_ms": set_ms}
    if inproc:
        for side in SIDES:
            v = inproc[f"{side}_us"]
            row[f"{side}_n"] = len(v)
            for q in (50, 99):
                ms = pct(v, q) / 1000
                row[f"{side}_p{q}_ms"] = round(ms, 4)
                row[f"{side}_p{q}_error"] = round(ms / set_ms - 1, 4) if set_ms else None
    if http:
        row.update(http_row(set_ms, http, overhead_ms))
    return row


def med(values: Iterable[float]) -> float:
    return pct(values, 50)


def http_row(set_ms: float, http: dict[str, Any], overhead_ms: dict[str, float]) -> dict[str, Any]:
    """One set time's HTTP figures: each a median over the rounds, ratios taken within a round (side by side)."""
    closed, raw = http["closed"], http["raw"]
    over = overhead_ms[http["dispatch"]]
    p50s = [s.latency.p50_ms for s in closed]
    raw_p50s, raw_p99s = ([pct(r["latency"], q) for r in raw] for q in (50, 99))
    row: dict[str, Any] = {"dispatch": http["dispatch"], "rounds": len(closed), "http_p50_ms": round(med(p50s), 4),
                           "http_p50_by_round_ms": [round(v, 4) for v in p50s]}
    row.update(http_excess_ms=round(row["http_p50_ms"] - set_ms - over, 4),
               expected_http_p50_ms=round(set_ms + over, 4),
               http_p50_error=round(row["http_p50_ms"] / (set_ms + over) - 1, 4),
               closed_p99_ms=round(med(s.latency.p99_ms for s in closed), 4),
               closed_rps=round(med(s.throughput_rps for s in closed), 1),
               closed_n=sum(s.latency.count for s in closed), open_rate=http.get("rate"))
    if "bare_p50_ms" in http:
        row.update(bare_http_p50_ms=round(http["bare_p50_ms"], 4),
                   bare_http_excess_ms=round(http["bare_p50_ms"] - set_ms - overhead_ms.get("bare", 0.0), 4))
    if all(s.server_timed for s in closed):  # the step's own split, from every answer's Server-Timing
        row.update(step_model_p50_ms=round(med(s.server_model_p50_ms for s in closed), 4),
                   step_server_p50_ms=round(med(s.server_p50_ms for s in closed), 4),
                   step_outside_server_p50_ms=round(med(s.outside_server_p50_ms for s in closed), 4))
    pooled = {k: [v for r in raw for v in r[k]] for k in ("model", "app")}
    row.update(raw_p50_ms=round(med(raw_p50s), 4), raw_p99_ms=round(med(raw_p99s), 4),
               raw_n=sum(len(r["latency"]) for r in raw),
               locust_over_raw_p50=round(med(a / b - 1 for a, b in zip(p50s, raw_p50s, strict=True)), 4),
               locust_over_raw_p99=round(med(s.latency.p99_ms / b - 1 for s, b in zip(closed, raw_p99s, strict=True)),
                                         4),
               model_p50_ms=round(pct(pooled["model"], 50), 4), model_p99_ms=round(pct(pooled["model"], 99), 4),
               app_outside_model_p50_ms=round(outside_model_p50_ms(pooled), 4))
    client = overhead_ms.get(f"{http['dispatch']}_client")
    if client is not None:  # the criterion: the raw client's reading + what Locust's client adds at 0 us
        errors = [a / (b + client) - 1 for a, b in zip(p50s, raw_p50s, strict=True)]
        row.update(expected_from_raw_p50_ms=round(med(raw_p50s) + client, 4),
                   from_raw_p50_error=round(med(errors), 4), from_raw_p50_error_by_round=[round(e, 4) for e in errors])
    if set_ms:
        row.update(model_p50_error=round(row["model_p50_ms"] / set_ms - 1, 4),
                   model_p99_error=round(row["model_p99_ms"] / set_ms - 1, 4))
    service = np.concatenate(http["closed_latency_s"]) if http["closed_latency_s"] else np.zeros(0)
    for key, arrivals, _ in OPEN_LOOPS:
        steps = [s for s in http.get(key, []) if s.latency is not None]
        if not steps:
            continue
        predicted = pct(queue_sojourn(service, http["rate"], arrivals), 99) * 1000 if len(service) else None
        ratios = [s.latency.p99_ms / c.latency.p99_ms for s, c in zip(steps, closed, strict=False)]
        p99 = med(s.latency.p99_ms for s in steps)
        row[key] = {
            "rps": round(med(s.throughput_rps for s in steps), 1), "n": sum(s.latency.count for s in steps),
            "failures": sum(s.failures for s in steps),
            "p50_ms": round(med(s.latency.p50_ms for s in steps), 4), "p99_ms": round(p99, 4),
            "over_closed_p99": round(med(ratios), 3), "over_closed_p99_by_round": [round(v, 3) for v in ratios],
            "queue_p99_ms": round(predicted, 4) if predicted else None,
            "over_queue_p99": round(p99 / predicted, 3) if predicted else None,
            "send_lag_p50_ms": round(med(s.send_lag_p50_ms for s in steps), 4),
            "send_lag_p99_ms": round(med(s.send_lag_p99_ms for s in steps), 4),
        }
    if http["raw_open"]:  # the reference open loop: what the same schedule reads with a generator that never lags
        open_p99s = [pct(o["latency"], 99) for o in http["raw_open"]]
        ratios = [a / b for a, b in zip(open_p99s, raw_p99s, strict=False)]
        row["raw_constant"] = {
            "n": sum(len(o["latency"]) for o in http["raw_open"]),
            "p50_ms": round(med(pct(o["latency"], 50) for o in http["raw_open"]), 4),
            "p99_ms": round(med(open_p99s), 4),
            "over_closed_p99": round(med(ratios), 3), "over_closed_p99_by_round": [round(v, 3) for v in ratios],
            "send_lag_p99_ms": round(med(pct(o["lag"], 99) for o in http["raw_open"]), 4),
        }
    return row


def print_tables(rows: list[dict[str, Any]], overhead_ms: dict[str, float]) -> None:
    if "bare_p50_ms" in rows[0]:
        print("\nIn process, interleaved in blocks (ms, error against the set time): a bare perf_counter_ns loop"
              " around the busy-wait; mcbench's timer around a stand-in session whose run() is that busy-wait (the"
              " instrument check); the bare loop around the torch spinner session; mcbench's timer around that session")
        print("| set ms | bare p50 | bare p99 | mcbench p50 | mcbench p99 | torch session, bare loop p50 | p99 "
              "| torch session, mcbench p50 | p99 | n each |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            cells = [f"{r[f'{s}_p{q}_ms']:.4f} ({r[f'{s}_p{q}_error']:+.2%})" for s in SIDES for q in (50, 99)]
            print(f"| {r['set_ms']:g} | " + " | ".join(cells) + f" | {r['mcbench_n']} |")
    if "http_p50_ms" in rows[0]:
        print_http_tables(rows, overhead_ms)


def spread(step: dict[str, Any]) -> str:
    """An open loop's "p50 / p99 (its p99 over the closed loop's)"."""
    nan = float("nan")
    return f"{step.get('p50_ms', nan):.3f} / {step.get('p99_ms', nan):.3f} ({step.get('over_closed_p99', nan):.2f}x)"


def print_http_tables(rows: list[dict[str, Any]], overhead_ms: dict[str, float]) -> None:
    nan = float("nan")
    over = ", ".join(f"{k} {overhead_ms[k]:.3f} ms" for k in ("inline", "thread", "bare") if k in overhead_ms)
    client = ", ".join(f"{k} {overhead_ms[f'{k}_client']:+.3f} ms" for k in ("inline", "thread")
                       if f"{k}_client" in overhead_ms)
    print(f"\nClosed loop over HTTP, one user, medians of {rows[0]['rounds']} rounds; a raw-socket client of the same"
          f" server alternates with Locust in each round. Overhead = p50 at 0 us: {over}; Locust's client over the raw"
          f" one at 0 us: {client}")
    print("| set ms | dispatch | Locust p50 | set + overhead at 0 us (err) | excess ms (bare socket's) "
          "| raw client p50 | **raw + Locust's client at 0 us (err; by round)** | closed p99 | raw p99 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        by_round = ", ".join(f"{e:+.1%}" for e in r.get("from_raw_p50_error_by_round", []))
        print(f"| {r['set_ms']:g} | {r['dispatch']} | {r['http_p50_ms']:.3f} | {r['expected_http_p50_ms']:.3f} "
              f"({r['http_p50_error']:+.1%}) | {r['http_excess_ms']:+.3f} ({r.get('bare_http_excess_ms', nan):+.3f}) | "
              f"{r['raw_p50_ms']:.3f} | **{r.get('expected_from_raw_p50_ms', nan):.3f} "
              f"({r.get('from_raw_p50_error', nan):+.1%}**; {by_round}) | {r['closed_p99_ms']:.3f} | "
              f"{r['raw_p99_ms']:.3f} |")
    if "constant" in rows[0]:
        print(f"\nOpen loops at half the closed loop's rate, medians of {rows[0]['rounds']} rounds, p99 ratios taken"
              " within a round; the reference is the raw client on the same constant schedule, spinning to each send")
        print("| set ms | rate | **constant p50 / p99 (/closed p99)**; by round "
              "| reference p50 / p99 (/raw closed p99) | constant, event-loop timer | Poisson p99 | queue-model p99 "
              "| measured / model "
              "| sent late p50 / p99: constant, event-loop timer, Poisson; reference p99 |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            c, lt, p = r.get("constant", {}), r.get("constant_loop_timer", {}), r.get("poisson", {})
            ref = r.get("raw_constant", {})
            by_round = ", ".join(f"{v:.2f}" for v in c.get("over_closed_p99_by_round", []))
            print(f"| {r['set_ms']:g} | {r['open_rate']:g} | **{spread(c)}**; by round {by_round} | {spread(ref)} | "
                  f"{spread(lt)} | {p.get('p99_ms', nan):.3f} | {p.get('queue_p99_ms') or nan:.3f} | "
                  f"{p.get('over_queue_p99') or nan:.2f} | " + ", ".join(
                      f"{x.get('send_lag_p50_ms', nan):.3f} / {x.get('send_lag_p99_ms', nan):.3f}" for x in (c, lt, p))
                  + f"; {ref.get('send_lag_p99_ms', nan):.3f} |")
    print("\nOver HTTP, the server's side: Server-Timing as the raw client read it (model: the call alone; outside: the"
          " handler's time beyond it, and at 0 us), the server's request-path code timed in process after the"
          " busy-wait and back to back (10 requests), and the Locust step's own record")
    print("| set ms | model p50 (err) | model p99 (err) | server outside the model (at 0 us) "
          "| request path after / back to back | the step's record: model / server / outside the server p50 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        zero = overhead_ms.get(f"{r['dispatch']}_app_outside_model", nan)
        print(f"| {r['set_ms']:g} | {r['model_p50_ms']:.3f} ({r.get('model_p50_error', 0):+.2%}) | "
              f"{r['model_p99_ms']:.3f} ({r.get('model_p99_error', 0):+.2%}) | "
              f"{r['app_outside_model_p50_ms']:.3f} ({zero:.3f}) | "
              f"{r.get('request_path_after_gap_us', nan):.0f} / {r.get('request_path_back_to_back_us', nan):.0f} us | "
              f"{r.get('step_model_p50_ms', nan):.3f} / {r.get('step_server_p50_ms', nan):.3f} / "
              f"{r.get('step_outside_server_p50_ms', nan):.3f} |")


def http_client(port: int, body: bytes, headers: dict[str, str], seconds: float, core: int,
                rate: float = 0.0) -> dict[str, list[float]]:
    """One client on `core` sending one infer request for `seconds` on the load generator's own HTTP connection,
    without Locust or gevent (a child process): back to back, or with `rate`, on a constant schedule of `rate` a
    second, spinning until each send and timing it from its scheduled time (a late answer delays the next send on
    the one connection, and that delay is charged: the reference open loop). Per answer its latency, the server's
    Server-Timing `model` and `app` durations, and how late it was sent (ms)."""
    from mcbench.bench.http_client import Connection, Origin, encode_post, parse_server_timing

    os.sched_setaffinity(0, {core})
    origin = Origin("127.0.0.1", port, False)
    request = encode_post(origin, "/v2/models/spinner/infer", headers, body)
    conn = Connection(origin, 30)
    for _ in range(20):  # the first calls warm the path up
        conn.exchange(request)
    out: dict[str, list[float]] = {"latency": [], "model": [], "app": [], "lag": []}
    clock = time.perf_counter
    begin = clock()
    for k in itertools.count():
        if rate:
            t0 = begin + k / rate
            while clock() < t0:
                pass
        else:
            t0 = clock()
        if t0 - begin >= seconds:
            break
        out["lag"].append((clock() - t0) * 1e3)
        answer = conn.exchange(request)
        out["latency"].append((clock() - t0) * 1e3)
        timing = parse_server_timing(answer.headers["server-timing"])
        out["model"].append(timing["model"])
        out["app"].append(timing["app"])
    conn.close()
    return out


def raw_http(port: int, requests: Any, seconds: float, core: int, rate: float = 0.0) -> dict[str, list[float]]:
    """`http_client` sending the first of `requests` (bench.load.Requests) to mcbench's server, in its own process
    as Locust runs in its own."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(http_client, (port, requests.bodies[0], requests.headers, seconds, core, rate))


def path_after_gap(service_us: float, calls: int = 200) -> dict[str, float]:
    """The server's own Python work on a request (decode the spinner's request, encode its answer), timed right
    after a busy-wait of `service_us` and back to back, alternating: whether this machine runs the same code
    slower after the model's call, which no constant overhead measured at 0 us would show (p50s, us)."""
    from mcbench.bench.load import Requests
    from mcbench.bench.protocol import HEADER_LENGTH, encode_infer_response
    from mcbench.bench.request_parsing import decode_infer_request
    from mcbench.optimizer.artifact import InputSpec

    feeds = {"x": np.zeros((1, 4), np.float32)}
    requests = Requests.encode([feeds])
    body, length, inputs = requests.bodies[0], requests.headers.get(HEADER_LENGTH), (InputSpec("x", (1, 4)),)

    def work() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(10):
            decoded = decode_infer_request(body, length, inputs, 1 << 20)
            json.dumps(encode_infer_response("spinner", ["y"], [decoded["x"]]))
        return (time.perf_counter_ns() - t0) / 1e3

    after, back_to_back = [], []
    for _ in range(calls):
        spin(service_us)
        after.append(work())
        back_to_back.append(work())
    return {"after_gap_us": float(np.median(after)), "back_to_back_us": float(np.median(back_to_back))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--service-us", default="500,2000,10000")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each HTTP step")
    parser.add_argument("--in-process-seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="HTTP rounds a set time (medians are reported)")
    parser.add_argument("--no-http", action="store_true", help="only the in-process instrument check")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    rows = []
    overhead_ms: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mcbench-truth-") as tmp:
        folder = Path(tmp)
        if not args.no_http:
            for below, mode in ((None, "inline"), (0.0, "thread")):
                zero = over_http(0.0, args.seconds, folder, cores, args.rounds, loops=False, inline_below_ms=below)
                p50s = [s.latency.p50_ms for s in zero["closed"]]
                overhead_ms[zero["dispatch"]] = med(p50s)
                overhead_ms[f"{zero['dispatch']}_app_outside_model"] = med(outside_model_p50_ms(r) for r in zero["raw"])
                overhead_ms[f"{zero['dispatch']}_client"] = med(
                    a - pct(r["latency"], 50) for a, r in zip(p50s, zero["raw"], strict=True))
                if zero["dispatch"] != mode:
                    print(f"note: the 0 us spinner ran {zero['dispatch']}, not {mode}", file=sys.stderr)
            overhead_ms["bare"] = bare_p50_ms(0.0, args.seconds / 2, cores)
        for us in (float(x) for x in args.service_us.split(",")):
            inproc = in_process(us, args.in_process_seconds, folder)
            http = None if args.no_http else over_http(us, args.seconds, folder, cores, args.rounds)
            if http is not None:
                http["bare_p50_ms"] = bare_p50_ms(us, args.seconds / 2, cores)
            rows.append(row_of(us, inproc, http, overhead_ms))
            if not args.no_http:
                rows[-1].update({f"request_path_{k}": round(v, 1) for k, v in path_after_gap(us).items()})
    result = {"overhead_p50_ms": {k: round(v, 4) for k, v in overhead_ms.items()}, "cores": cores,
              "loadavg": os.getloadavg(), "wall_s": round(time.perf_counter() - started, 1), "rows": rows}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print_tables(rows, overhead_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
