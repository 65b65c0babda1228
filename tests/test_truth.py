"""Known service time, short: the instruments never read below what is there, and lose no request.

The full check against the set time (within 2% in-process, set time + HTTP overhead over HTTP, no
coordinated omission in the open loop) is `benchmarks/truth.py`, on a quiet machine; here the machine
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
    from mcbench.bench.load import Endpoint, Requests, StepRules, run_load
    from mcbench.bench.server import serve_in_subprocess

    artifact = spinner_artifact(3000, tmp_path)
    spec = tmp_path / "server.json"
    spec.write_text(json.dumps({"name": "spinner", "artifact": artifact.to_dict(),
                                "target": Target("torch", threads=1).to_dict()}))
    cores = sorted(os.sched_getaffinity(0))
    rules = StepRules(seconds=3, warmup_s=0.5, max_seconds=3, check_every=0)
    with serve_in_subprocess(spec, cores[:1]) as server:
        result = run_load(Endpoint(server.url, "spinner"), Requests.encode([{"x": np.zeros((1, 4), np.float32)}]),
                          [1], [20.0], rules, cores[-1:], cores[:1], 1, tmp_path / "load")
    for step in result.steps + result.open_steps:
        assert step.requests > 0 and step.failures == 0
        assert step.latency.p50_ms >= 3.0  # the service time is inside every answer's latency
    closed = result.steps[0]
    assert closed.throughput_rps <= 1000 / 3.0 * 1.05  # one user cannot beat 1 / service time
