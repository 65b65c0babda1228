"""The Locust load stage against the real model server: per-step counts, microsecond latencies, Locust's totals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench.load import Records, busiest_step_cpu_percent, run_load, step_results
from bench.server import serve_in_subprocess
from optimizer.artifact import Artifact, InputSpec, generated_inputs
from optimizer.targets import Target
from tests.conftest import make_linear_onnx


def records(rows: list[tuple[int, float, float, int, int]], boundaries: list[tuple[float, float]]) -> Records:
    a, b = np.array(rows, dtype=float).reshape(-1, 5), np.array(boundaries, dtype=float)
    return Records(a[:, 0].astype(int), a[:, 1], a[:, 2], a[:, 3].astype(int), a[:, 4].astype(int),
                   ["", "HTTP 500", "ConnectionRefusedError"], b[:, 0], b[:, 1])


def test_step_results_discard_warmup_and_use_the_real_step_windows() -> None:
    rows = [
        (0, 0.1, 0.001, 200, 0),  # warm-up of step 0: dropped
        (0, 0.6, 0.002, 200, 0),
        (0, 1.5, 0.004, 500, 1),
        (1, 2.2, 0.003, 200, 0),  # step 1 really began at 2.1 (a late tick): warm-up until 2.6
        (1, 2.7, 0.005, 200, 0),
        (1, 3.0, 0.007, 0, 2),
    ]
    steps = step_results(records(rows, [(0.0, 0.0), (2.1, 1.0), (4.1, 1.5)]), [1, 2], warmup_s=0.5)
    first, second = steps
    assert (first.users, first.requests, first.failures, first.errors) == (1, 2, 1, {"HTTP 500": 1})
    assert first.duration_s == pytest.approx(1.6) and first.throughput_rps == pytest.approx(1 / 1.6)
    assert first.latency.count == 1 and first.latency.p50_ms == pytest.approx(2.0)
    assert (second.requests, second.failures, second.errors) == (2, 1, {"ConnectionRefusedError": 1})
    assert second.latency.p50_ms == pytest.approx(5.0) and second.latency.samples_us == []


def test_busiest_step_cpu_percent() -> None:
    rec = records([(0, 0.0, 0.001, 200, 0)], [(0.0, 0.0), (2.0, 1.0), (4.0, 2.8)])
    assert busiest_step_cpu_percent(rec) == pytest.approx(90.0)


@pytest.mark.slow
def test_run_load_against_the_server(tmp_path: Path) -> None:
    artifact = Artifact(make_linear_onnx(tmp_path / "m.onnx"), "onnx", (InputSpec("x", (1, 4)),))
    spec = tmp_path / "server.json"
    spec.write_text(json.dumps({"name": "m", "artifact": artifact.to_dict(),
                                "target": Target("onnxruntime", threads=1).to_dict()}))
    feeds = generated_inputs(artifact.inputs, 1)[0]
    cores = sorted(os.sched_getaffinity(0))
    server_cores, loadgen_cores = ([cores[0]], [cores[1]]) if len(cores) > 1 else (cores, cores)
    with serve_in_subprocess(spec, cores=server_cores) as server:
        result = run_load(server.url, "m", feeds, [(1, 2.0), (2, 2.0)], loadgen_cores=loadgen_cores,
                          server_cores=server_cores, server_threads=1, work_dir=tmp_path / "load", warmup_s=0.5)
    print([(s.users, s.requests, round(s.throughput_rps), round(s.latency.p50_ms, 3), round(s.latency.p99_ms, 3))
           for s in result.steps], result.loadgen_cpu_percent, result.locust_total_requests)
    assert [s.users for s in result.steps] == [1, 2]
    for step in result.steps:
        assert step.requests > 0 and step.failures == 0 and step.errors == {}
        assert step.latency is not None and step.latency.p50_ms > 0
        assert step.latency.count == step.requests - step.failures
        assert step.throughput_rps > 0 and 1.0 <= step.duration_s <= 2.6
    assert result.locust_total_failures == 0
    assert result.locust_total_requests >= sum(s.requests for s in result.steps)
    assert result.cores_shared is (len(cores) == 1) and result.server_threads == 1
    assert result.loadgen_cpu_percent is not None and 0 < result.loadgen_cpu_percent <= 110
    assert (tmp_path / "load" / "locust_stats.csv").exists()
