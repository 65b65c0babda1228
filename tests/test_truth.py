"""Known service time, short: the instruments never read below what is there, and lose no request.

The full check against the set time (within 2% in-process, set time + HTTP overhead over HTTP, no
coordinated omission in the open loop) is `python -m benchmarks.truth`, on a quiet machine; here the machine
may be loaded, so only what holds under any load is asserted: a busy-wait of T cannot take less than T.
"""

from __future__ import annotations

import json
import os

import numpy as np

from mcbench.bench.calibration import spin, spinner_artifact
from mcbench.bench.latency import TimingPlan, measure_latency
from mcbench.optimizer.targets import Target, open_session


def test_the_spinner_takes_its_set_time():
    import time

    t0 = time.perf_counter()
    spin(3000)
    assert time.perf_counter() - t0 >= 0.003


def test_in_process_timer_recovers_at_least_the_set_time(tmp_path):
    session = open_session(spinner_artifact(2000, tmp_path), Target("torch", threads=1))
    plan = TimingPlan(warmup_runs=3, min_runs=50, min_seconds=0.2, max_seconds=2.0, settle_tolerance=1e9)
    stats = measure_latency(session, {"x": np.zeros((1, 4), np.float32)}, plan)[0]
    assert stats.count >= 50 and len(stats.samples_us) == stats.count
    assert min(stats.samples_us) >= 2000  # never below the busy-wait
    assert 2.0 <= stats.p50_ms < 2.0 * 20  # and not absurdly above it, even on a loaded machine


def test_over_http_under_locust_every_request_takes_at_least_the_set_time(tmp_path):
    from mcbench.bench.launcher import serve_in_subprocess
    from mcbench.bench.load import Endpoint, Requests, run_load
    from mcbench.bench.load_plan import UNBOUNDED_P99_MS, LoadPlan

    # as benchmarks.truth serves it: the torch spinner without a wait of its own, the server's --spin-ms hook
    artifact = spinner_artifact(0, tmp_path)
    spec = tmp_path / "server.json"
    spec.write_text(json.dumps({"name": "spinner", "artifact": artifact.to_dict(),
                                "target": Target("torch", threads=1).to_dict()}))
    cores = sorted(os.sched_getaffinity(0))
    rules = LoadPlan(step_seconds=3, warmup_s=0.5, max_step_seconds=3, check_every=0, budget_p99_ms=UNBOUNDED_P99_MS)
    with serve_in_subprocess(spec, cores[:1], extra=["--spin-ms", "3"]) as server:
        requests = Requests.encode([{"x": np.zeros((1, 4), np.float32)}])
        result = run_load(Endpoint(server.url, "spinner"), requests, [1], [20.0], rules, cores[-1:], cores[:1], 1,
                          tmp_path / "load")
        raw = _truth_script().raw_http(server.port, requests, 1.0, cores[-1])
        scheduled = _truth_script().raw_http(server.port, requests, 1.0, cores[-1], rate=20.0)
    # the reference client reads the server's Server-Timing: the busy-wait is inside the model call, the call inside
    # the handler, the handler inside the client's latency
    assert len(raw["latency"]) >= 10
    assert all(3.0 <= m <= a <= lat for m, a, lat in zip(raw["model"], raw["app"], raw["latency"], strict=True))
    # the reference open loop sends every scheduled request, however late, and charges the lateness
    assert len(scheduled["latency"]) == len(scheduled["lag"]) == 20
    assert all(lat >= 3.0 + lag and lag >= 0 for lat, lag in zip(scheduled["latency"], scheduled["lag"], strict=True))
    for step in result.steps + result.open_steps:
        assert step.requests > 0 and step.failures == 0
        assert step.latency.p50_ms >= 3.0  # the service time is inside every answer's latency
        assert 3.0 <= step.server_model_p50_ms <= step.server_p50_ms  # and the step's record of the server's clock
    closed = result.steps[0]
    assert closed.throughput_rps <= 1000 / 3.0 * 1.05  # one user cannot beat 1 / service time


def _truth_script():
    """benchmarks/truth.py, imported by its package name, so the child processes it spawns (which get this sys.path:
    the repository root, where pytest puts it for tests/ as a package) find its functions."""
    import importlib

    return importlib.import_module("benchmarks.truth")


def test_the_queue_model_gives_textbook_waits():
    truth = _truth_script()
    service = np.array([0.002])  # a deterministic 2 ms service
    constant = truth.queue_sojourn(service, rate=250.0, arrivals="constant", n=20_000)
    assert np.allclose(constant, 0.002)  # arrivals 4 ms apart never queue behind a 2 ms service
    poisson = truth.queue_sojourn(service, rate=250.0, arrivals="poisson", n=200_000, seed=1)
    # M/D/1 at utilisation 0.5: mean wait = rho / (2 mu (1 - rho)) = half a service time
    assert abs(poisson.mean() / 0.003 - 1) < 0.03
    assert np.percentile(poisson, 99) > 3 * 0.002  # Poisson arrivals queue: the tail is several services long


def test_truth_short_in_process_version_runs_and_never_reads_below_the_set_time(tmp_path, capsys):
    truth = _truth_script()
    out = tmp_path / "truth.json"
    assert truth.main(["--no-http", "--service-us", "300", "--in-process-seconds", "0.1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["set_ms"] for r in rows] == [0.3]
    row = rows[0]
    assert all(row[f"{side}_n"] >= 100 for side in ("bare", "mcbench", "session", "torch"))
    for side in ("bare", "mcbench", "session", "torch"):  # the stand-in session and the torch one, both timers
        for q in (50, 99):
            assert row[f"{side}_p{q}_ms"] >= 0.3  # a busy-wait of 0.3 ms cannot be timed shorter, however loaded
    assert "| 0.3 |" in capsys.readouterr().out


def test_the_request_path_check_times_the_servers_own_code_both_ways():
    timed = _truth_script().path_after_gap(200.0, calls=20)
    assert set(timed) == {"after_gap_us", "back_to_back_us"}
    assert all(0 < v < 1e6 for v in timed.values())  # ten decodes and encodes: microseconds to milliseconds
