"""A serving configuration on the real server: several model instances, dynamic batching, and what it says of them."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.launcher import serve_in_subprocess
from mcbench.bench.serving import ServingConfig
from mcbench.optimizer.intake import InputOverride, load_onnx
from mcbench.optimizer.targets import Target
from tests.conftest import make_linear_onnx


def linear_spec(tmp_path: Path, config: ServingConfig) -> Path:
    artifact = load_onnx(make_linear_onnx(tmp_path / "m.onnx", batch="batch"), {"x": InputOverride((1, 4))})
    spec = {"name": "lin", "artifact": artifact.to_dict(),
            "target": config.target_dict(Target("onnxruntime").to_dict())}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def post(url: str, row: list[float]) -> list[float]:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row}]}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as response:
        return json.loads(response.read())["outputs"][0]["data"]


def test_config_flags_label_and_target_settings() -> None:
    config = ServingConfig(instances=2, threads=1, max_batch=8, max_wait_ms=2.0, hint="THROUGHPUT", streams=2)
    assert config.server_flags() == ["--instances", "2", "--max-batch", "8", "--max-wait-ms", "2"]
    assert config.label == "2x1t b8/2ms ov:THROUGHPUT/2"
    target = config.target_dict({"runtime": "openvino", "device": "cpu", "threads": 4, "options": {"x": 1}})
    assert target == {"runtime": "openvino", "device": "cpu", "threads": 1,
                      "options": {"x": 1, "hint": "THROUGHPUT", "streams": 2}}
    assert ServingConfig.from_dict(config.to_dict()) == config
    assert ServingConfig().server_flags() == ["--instances", "1"] and ServingConfig().label == "1xdt nobatch"


def test_two_instances_with_batching_answer_every_request_right_and_say_so(tmp_path: Path) -> None:
    config = ServingConfig(instances=2, threads=1, max_batch=4, max_wait_ms=5.0)
    rows = np.random.default_rng(1).standard_normal((24, 4)).astype(np.float32)
    with serve_in_subprocess(linear_spec(tmp_path, config), cores=None, extra=config.server_flags()) as server:
        assert (server.ready["instances"], server.ready["threads"], server.ready["max_batch"],
                server.ready["max_wait_ms"]) == ("2", "1", "4", "5")
        url = f"{server.url}/v2/models/lin/infer"
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda r: post(url, r.tolist()), rows))
        with urllib.request.urlopen(f"{server.url}/v2/stats", timeout=10) as response:
            stats = json.loads(response.read())
    from mcbench.optimizer.targets import open_session

    artifact = load_onnx(tmp_path / "m.onnx", {"x": InputOverride((1, 4))})
    offline = open_session(artifact, Target("onnxruntime", threads=1)).run({"x": rows})[0]
    np.testing.assert_allclose(np.array(answers), offline, rtol=1e-5, atol=1e-6)
    assert (stats["instances"], stats["max_batch"], stats["max_wait_ms"]) == (2, 4, 5.0)
    assert stats["batched_requests"] == 24 and 6 <= stats["batches"] <= 24


def finished_run_with_a_serving_search(tmp_path: Path, best: ServingConfig) -> Path:
    """A results.json of one onnxruntime variant whose serving search chose `best`."""
    from mcbench.reports.schema import RunResult, ServingSearch, ServingTrial, VariantResult, save_results

    artifact = load_onnx(make_linear_onnx(tmp_path / "m.onnx", batch="batch"), {"x": InputOverride((1, 4))})
    trials = [ServingTrial("1x1t nobatch", ServingConfig(1, 1).to_dict(), rps_at_slo=900.0, outcome="peak"),
              ServingTrial(best.label, best.to_dict(), rps_at_slo=1500.0, outcome="peak")]
    serving = ServingSearch(50.0, trials, best=best.label, best_config=best.to_dict(), best_rps=1500.0,
                            default_rps=900.0)
    variant = VariantResult("ort-fp32", "onnxruntime", ["export.onnx"], "ok", artifact=artifact.to_dict(),
                            settings={"in_process": Target("onnxruntime").to_dict()}, serving=serving)
    run = RunResult("r1", "2026-12-07T00:00:00+00:00", {}, {}, {}, [variant])
    folder = tmp_path / "run"
    folder.mkdir()
    save_results(run, folder / "results.json")
    return folder


def test_mcbench_serve_a_run_variant_starts_its_best_serving_configuration(tmp_path: Path) -> None:
    import subprocess
    import sys

    best = ServingConfig(instances=2, threads=1, max_batch=4, max_wait_ms=3.0)
    run = finished_run_with_a_serving_search(tmp_path, best)
    proc = subprocess.Popen([sys.executable, "-m", "mcbench.cli", "serve", f"{run}:ort-fp32", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        chosen, serving, ready = (proc.stdout.readline() for _ in range(3))
        assert chosen == ("serving configuration from the run's serving search: 2x1t b4/3ms (1500 req/s with p99 "
                          "within 50 ms there)\n"), chosen + proc.stderr.read()
        assert serving.startswith("serving 'ort-fp32' on http://127.0.0.1:"), serving
        fields = dict(f.split("=", 1) for f in ready.split()[1:])
        assert (fields["instances"], fields["threads"], fields["max_batch"], fields["max_wait_ms"]) == (
            "2", "1", "4", "3"), ready
        with urllib.request.urlopen(f"http://127.0.0.1:{fields['port']}/v2/stats", timeout=10) as response:
            stats = json.loads(response.read())
        assert (stats["instances"], stats["max_batch"], stats["max_wait_ms"]) == (2, 4, 3.0)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_the_serving_stage_measures_configurations_on_the_real_server_and_locust(tmp_path: Path) -> None:
    """The search with the real Trial (server + Locust), two configurations of two steps: every step answered."""
    from mcbench.bench.load import Requests
    from mcbench.config import LoadPlan
    from mcbench.serving_search import search
    from mcbench.serving_stage import search_rules, served

    artifact = load_onnx(make_linear_onnx(tmp_path / "m.onnx", batch="batch"), {"x": InputOverride((1, 4))})
    spec = {"name": "lin", "artifact": artifact.to_dict(), "target": Target("onnxruntime").to_dict()}
    requests = Requests.encode([{"x": np.ones((1, 4), np.float32)}])
    rules = search_rules(LoadPlan(step_seconds=2.0, warmup_s=0.5))

    def trial(config: ServingConfig):
        return served(config, spec, tmp_path / config.label.replace(" ", "_").replace("/", "_"), requests, rules,
                      ([0], [0]), 0)

    configs = [ServingConfig(1, 1), ServingConfig(2, 1, max_batch=4)]
    trials = search(configs, trial, 1000.0, left_s=lambda: 1e9, step_s=5.0, users=(2, 4))
    assert [t.label for t in trials] == ["1x1t nobatch", "2x1t b4/2ms"]
    for t in trials:
        assert t.outcome in ("peak", "cut") and t.stopped, t
        assert [s.users for s in t.steps][:1] == [2] and all(s.failures == 0 and s.throughput_rps > 0 for s in t.steps)
        assert t.rps_at_slo == max(s.throughput_rps for s in t.steps)


@pytest.mark.parametrize(("field", "value", "why"), [
    ("instances", 100_000, "instances (1-64), max_batch (1-4096), threads and streams must be whole numbers in range"),
    ("max_batch", "8", "instances (1-64), max_batch (1-4096), threads and streams must be whole numbers in range"),
    ("max_wait_ms", 1e9, "max_wait_ms must be a number from 0 to 60000: 1000000000.0"),
    ("hint", "CUMULATIVE_THROUGHPUT", "hint must be one of LATENCY, THROUGHPUT: 'CUMULATIVE_THROUGHPUT'"),
])
def test_a_results_file_cannot_start_a_serving_configuration_out_of_range(tmp_path: Path, capsys, field, value,
                                                                          why) -> None:
    """results.json is data: a best configuration edited to 100,000 instances is one line and exit 2, no session."""
    from mcbench.cli import main

    run = finished_run_with_a_serving_search(tmp_path, ServingConfig(instances=2, threads=1))
    results = json.loads((run / "results.json").read_text())
    results["variants"][0]["serving"]["best_config"][field] = value
    (run / "results.json").write_text(json.dumps(results))
    assert main(["serve", f"{run}:ort-fp32", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mcbench: serve: {run / 'results.json'}: the serving search's best configuration for "
                          "'ort-fp32' cannot be started: "), err
    assert why in err and "\n" not in err
