"""`mcbench load --url` against a real third-party KServe v2 server: Seldon's MLServer, installed from PyPI into its
own venv (tests/third_party_servers.py), serving a scikit-learn model through its own sklearn runtime.

MLServer differs from mcbench's server where it matters to a load generator: it reads no binary tensor data in
requests (a 500), answers JSON whatever a request asks for, and sends no Server-Timing header. So the load must go
out as JSON, and the server's time split must be recorded as absent, not as zero.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mcbench.bench.load import free_port
from mcbench.reports.capacity import capacity
from mcbench.reports.schema import load_results
from tests.third_party_servers import running, server_venv

ROOT = Path(__file__).resolve().parents[1]
MODEL = "digits"

# Run with the server venv's python, so the model is pickled by the scikit-learn that will load it.
TRAIN = """
import sys, joblib
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
x, y = load_digits(return_X_y=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x[:1500], y[:1500])
joblib.dump(model, sys.argv[1])
"""


def mlserver_folder(folder: Path, python: Path) -> dict[str, int]:
    """A model repository for `mlserver start`: the trained model, its model-settings.json (its inputs declared,
    so that GET /v2/models/digits lists them) and a settings.json on free ports; returns the ports."""
    model = folder / MODEL
    model.mkdir(parents=True)
    subprocess.run([str(python), "-c", TRAIN, str(model / "model.joblib")], check=True, timeout=300)
    (model / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
        "inputs": [{"name": "pixels", "datatype": "FP64", "shape": [-1, 64]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
        "parameters": {"uri": "./model.joblib", "version": "v1"}}))
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    (folder / "settings.json").write_text(json.dumps({"host": "127.0.0.1", "debug": False, **ports}))
    return ports


def predicted_digits(url: str) -> tuple[list[int], list[int]]:
    """The server's answers for the 20 held-out digits the model never saw, and their true labels."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    body = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP64", "shape": [20, 64],
                                   "data": x[-20:].reshape(-1).tolist()}]}).encode()
    request = urllib.request.Request(f"{url}/v2/models/{MODEL}/infer", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        outputs = json.loads(answer.read())["outputs"]
    return [int(v) for v in outputs[0]["data"]], [int(v) for v in y[-20:]]


@pytest.mark.slow
def test_mcbench_load_records_mlservers_figures(tmp_path: Path) -> None:
    bin_dir = server_venv("mlserver")
    repo = tmp_path / "models"
    url = f"http://127.0.0.1:{mlserver_folder(repo, bin_dir / 'python')['http_port']}"
    out = tmp_path / "out"
    with running([str(bin_dir / "mlserver"), "start", str(repo)], repo, f"{url}/v2/models/{MODEL}/ready",
                 tmp_path / "mlserver.log"):
        predicted, labels = predicted_digits(url)
        proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "load", "--url", url, "--model", MODEL, "--quick",
                               "--out", str(out), "--budget-p99-ms", "500", "--target-rps", "1000"],
                              capture_output=True, text=True, cwd=ROOT, timeout=600)
    # the model is really served: a trained classifier, not a stand-in (0.9 leaves room; it gets 19 or 20 of 20)
    assert sum(p == t for p, t in zip(predicted, labels, strict=True)) >= 18, (predicted, labels)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the server refused tensors as binary data (HTTP 500" in proc.stderr  # so requests went as JSON
    variant = load_results(out / "results.json").variants[0]
    load = variant.load
    assert variant.status == "ok" and variant.settings == {"url": url}
    assert load.inputs == "json" and load.answers == "binary"  # binary answers asked for, JSON ones came
    steps = load.steps + load.open_steps
    assert [s.users for s in load.steps] == [1, 4] and len(load.open_steps) == 1
    for step in steps:
        assert step.requests > 0 and step.throughput_rps > 0
        assert step.failures == sum(step.errors.values()) == 0, step.errors
        assert step.latency.p99_ms >= step.latency.p50_ms > 0 and step.p999_ms >= step.latency.p99_ms
        assert step.binary_answers == 0
        # MLServer sends no Server-Timing header: its split is absent, not zero
        assert step.server_timed == 0
        assert step.server_p50_ms is step.server_model_p50_ms is step.server_encode_p50_ms is None
        assert step.outside_server_p50_ms is None
    assert load.recorded_requests == load.locust_total_requests > 0  # every request Locust made was recorded
    assert variant.capacity == capacity(load, 500, 1000, None)
    assert "server, model:" not in proc.stdout  # no columns for a split the server did not send
    best = variant.capacity.max_rps_under_budget
    assert "max throughput under p99 500 ms: " + ("none" if best is None else f"{best:.0f} req/s") in proc.stdout
