"""The model server over real HTTP: health, metadata, JSON and binary infer, and bad requests that must not kill it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.http_client import parse_server_timing
from mcbench.bench.launcher import ServerHandle, serve_in_subprocess
from mcbench.bench.protocol import encode_infer_request
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.targets import Target
from tests.conftest import save_graph

MODEL = "twoin"
X = np.array([[0.5, -1.25, 3.0], [0.0, 2.0, -4.5]], dtype=np.float32)
K = np.array([[1, 2, 3], [-7, 0, 1_000_000]], dtype=np.int64)


def make_two_input_onnx(path: Path) -> Path:
    """y = x * 2 + 1 + float(k) (FP32) and k1 = k + 1 (INT64): exact in float32 for the values above."""
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    one_i = helper.make_tensor("one_i", TensorProto.INT64, [], [1])
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["x2"]),
        helper.make_node("Add", ["x2", "one"], ["x21"]),
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x21", "kf"], ["y"]),
        helper.make_node("Add", ["k", "one_i"], ["k1"]),
    ]
    graph = helper.make_graph(
        nodes,
        "twoin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("k1", TensorProto.INT64, [2, 3])],
        initializer=[two, one, one_i],
    )
    return save_graph(graph, path)


def write_spec(tmp: Path) -> Path:
    onnx_path = make_two_input_onnx(tmp / "twoin.onnx")
    artifact = Artifact(onnx_path, "onnx", (InputSpec("x", (2, 3)), InputSpec("k", (2, 3), "int64")))
    spec = {"name": MODEL, "artifact": artifact.to_dict(), "target": Target("onnxruntime", threads=1).to_dict()}
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with serve_in_subprocess(write_spec(tmp_path_factory.mktemp("server")), cores=None) as handle:
        yield handle


def call(server: ServerHandle, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    """(status, parsed JSON body or None) for one request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(server.url + path, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    return status, (json.loads(raw) if raw else None)


def infer(server: ServerHandle, payload: dict) -> tuple[int, dict | None]:
    return call(server, f"/v2/models/{MODEL}/infer", json.dumps(payload).encode(), {"Content-Type": "application/json"})


def expected_outputs() -> dict[str, list]:
    return {"y": (X * 2 + 1 + K.astype(np.float32)).reshape(-1).tolist(), "k1": (K + 1).reshape(-1).tolist()}


def check_outputs(answer: dict) -> None:
    assert answer["model_name"] == MODEL
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert {n: o["data"] for n, o in outputs.items()} == expected_outputs()
    assert outputs["y"]["datatype"] == "FP32" and outputs["y"]["shape"] == [2, 3]
    assert outputs["k1"]["datatype"] == "INT64"


def good_inputs() -> list[dict]:
    return [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": X.reshape(-1).tolist()},
        {"name": "k", "shape": [2, 3], "datatype": "INT64", "data": K.reshape(-1).tolist()},
    ]


def test_health_and_metadata(server: ServerHandle) -> None:
    assert call(server, "/v2/health/live")[0] == 200
    assert call(server, "/v2/health/ready")[0] == 200
    assert call(server, f"/v2/models/{MODEL}/ready")[0] == 200
    status, meta = call(server, f"/v2/models/{MODEL}")
    assert status == 200
    assert meta["name"] == MODEL and meta["platform"].startswith("onnxruntime")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [2, 3]},
                              {"name": "k", "datatype": "INT64", "shape": [2, 3]}]
    assert [o["name"] for o in meta["outputs"]] == ["y", "k1"]


def test_infer_json(server: ServerHandle) -> None:
    status, answer = infer(server, {"inputs": good_inputs()})
    assert status == 200, answer
    check_outputs(answer)


def test_infer_binary_extension(server: ServerHandle) -> None:
    body, headers = encode_infer_request({"k": K, "x": X}, binary=True)
    assert "Inference-Header-Content-Length" in headers
    status, answer = call(server, f"/v2/models/{MODEL}/infer", body, headers)
    assert status == 200, answer
    check_outputs(answer)


def server_timing(server: ServerHandle) -> dict[str, float]:
    """The Server-Timing header of one binary infer answer, as {metric: ms}."""
    body, headers = encode_infer_request({"k": K, "x": X}, binary=True)
    request = urllib.request.Request(server.url + f"/v2/models/{MODEL}/infer", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return parse_server_timing(response.headers["Server-Timing"])


def test_infer_answers_carry_server_timing_for_the_model_call_and_the_handler(server: ServerHandle) -> None:
    timing = server_timing(server)
    assert set(timing) == {"model", "encode", "app"}
    assert 0 < timing["model"] <= timing["app"] < 1000
    assert 0 < timing["encode"] <= timing["app"] - timing["model"]  # writing the answer, after the model call


def test_server_timing_holds_a_known_model_time_in_a_worker_thread(tmp_path: Path) -> None:
    extra = ["--delay-ms", "30", "--inline-below-ms", "0"]
    with serve_in_subprocess(write_spec(tmp_path), cores=None, extra=extra) as slow:
        assert slow.dispatch == "thread"
        timing = server_timing(slow)
    assert 30.0 <= timing["model"] <= timing["app"]  # the sleep is inside the model call, the call inside the handler


def test_infer_json_via_encoder(server: ServerHandle) -> None:
    body, headers = encode_infer_request({"x": X, "k": K}, binary=False)
    status, answer = call(server, f"/v2/models/{MODEL}/infer", body, headers)
    assert status == 200, answer
    check_outputs(answer)


def bad(inputs_change: dict) -> dict:
    """The good request with the first input's fields changed."""
    inputs = good_inputs()
    inputs[0] = {**inputs[0], **inputs_change}
    return {"inputs": inputs}


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (bad({"name": "nope"}), ["'nope'", "x", "k"]),
        (bad({"shape": [3, 2]}), ["[3, 2]", "[2, 3]"]),
        (bad({"datatype": "FP64"}), ["FP64", "FP32"]),
        (bad({"data": [1.0, 2.0]}), ["2 values", "6"]),
        (bad({"data": ["a", "b", "c", "d", "e", "f"]}), ["FP32"]),
        ({"inputs": good_inputs()[:1]}, ["missing", "k"]),
        ({"inputs": []}, ["inputs"]),
        ({"outputs": []}, ["inputs"]),
    ],
    ids=["name", "shape", "datatype", "length", "strings", "missing", "empty", "no-inputs"],
)
def test_bad_requests_are_400_with_a_reason(server: ServerHandle, payload: dict, words: list[str]) -> None:
    status, answer = infer(server, payload)
    assert status == 400
    assert all(w in answer["error"] for w in words), answer["error"]


def test_int64_overflow_is_400(server: ServerHandle) -> None:
    inputs = good_inputs()
    inputs[1] = {**inputs[1], "data": [10**30] * 6}
    assert infer(server, {"inputs": inputs})[0] == 400


def test_malformed_json_and_bad_binary_are_400(server: ServerHandle) -> None:
    path = f"/v2/models/{MODEL}/infer"
    status, answer = call(server, path, b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "JSON" in answer["error"]
    body, headers = encode_infer_request({"x": X, "k": K}, binary=True)
    status, answer = call(server, path, body[:-8], headers)  # binary data cut short
    assert status == 400 and "bytes" in answer["error"]
    status, answer = call(server, path, body, {**headers, "Inference-Header-Content-Length": "99999"})
    assert status == 400


def test_unknown_model_is_404(server: ServerHandle) -> None:
    status, answer = call(server, "/v2/models/other/infer", json.dumps({"inputs": good_inputs()}).encode())
    assert status == 404 and "other" in answer["error"]
    assert call(server, "/v2/models/other")[0] == 404
    assert call(server, "/v2/models/other/ready")[0] == 404


def test_still_serving_after_bad_requests(server: ServerHandle) -> None:
    for payload in (b"", b"[]", b"null", b'{"inputs": [1, 2]}', b'{"inputs": [{"name": "x", "shape": "2x3"}]}'):
        status, _ = call(server, f"/v2/models/{MODEL}/infer", payload, {"Content-Type": "application/json"})
        assert status == 400
    assert call(server, "/v2/health/ready")[0] == 200
    status, answer = infer(server, {"inputs": good_inputs()})
    assert status == 200
    check_outputs(answer)


def test_start_failure_is_a_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    artifact = Artifact(tmp_path / "missing.onnx", "onnx", (InputSpec("x", (1, 4)),))
    target = Target("onnxruntime").to_dict()
    spec.write_text(json.dumps({"name": "m", "artifact": artifact.to_dict(), "target": target}))
    with pytest.raises(RuntimeError, match="exited"):
        with serve_in_subprocess(spec, cores=None, timeout_s=60):
            pass


def test_mcbench_serve_runs_the_same_server_with_a_token(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    model = make_two_input_onnx(tmp_path / "twoin.onnx")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "MCBENCH_SERVER_TOKEN": "tok", "TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-m", "mcbench.cli", "serve", str(model), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        first = proc.stdout.readline()
        ready = proc.stdout.readline()
        assert first.startswith("serving 'twoin' on http://127.0.0.1:"), first
        assert ready.startswith("MCBENCH_SERVER_READY port="), ready + proc.stderr.read()
        handle = ServerHandle(int(ready.split()[1].split("=")[1]), proc.pid, tmp_path / "log")
        assert call(handle, "/v2/models/twoin")[0] == 401
        status, meta = call(handle, "/v2/models/twoin", headers={"Authorization": "Bearer tok"})
        assert status == 200 and [i["name"] for i in meta["inputs"]] == ["x", "k"]
        assert len(list(scratch.glob("mcbench-serve-*"))) == 1
    finally:
        proc.terminate()
        code = proc.wait(10)
    # A container's stop (SIGTERM) exits 128 + 15 and leaves no scratch folder behind.
    assert code == 143 and list(scratch.glob("mcbench-serve-*")) == []


def test_mcbench_serve_bad_model_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mcbench.cli import main

    assert main(["serve", str(tmp_path / "model.txt")]) == 2
    assert "neither an .onnx file nor RUN_DIR:VARIANT" in capsys.readouterr().err


@pytest.mark.slow
def test_mcbench_load_url_sweeps_any_kserve_server(server: ServerHandle, tmp_path: Path, capsys) -> None:
    from mcbench.cli import main
    from mcbench.reports.schema import load_results

    code = main(["load", "--url", server.url, "--model", MODEL, "--quick", "--out", str(tmp_path / "out"),
                 "--budget-p99-ms", "500", "--target-rps", "1000", "--cost-per-hour", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    variant = load_results(tmp_path / "out" / "results.json").variants[0]
    assert variant.name == MODEL and variant.status == "ok"
    assert [s.users for s in variant.load.steps] == [1, 4] and len(variant.load.open_steps) == 1
    for step in variant.load.steps + variant.load.open_steps:  # mcbench's own server says where its time went
        assert step.server_timed == step.requests - step.failures > 0
        assert 0 < step.server_model_p50_ms <= step.server_p50_ms <= step.latency.p50_ms
        assert step.binary_answers == step.requests - step.failures  # asked for binary data, by default
        assert 0 < step.server_encode_p50_ms <= step.server_p50_ms
    assert variant.load.answers == variant.load.inputs == "binary"  # mcbench serve reads binary tensor data
    assert "server, model: the server's own p50s by its Server-Timing header" in out
    # Behaviour, not the machine's speed: whatever the sweep measured, the capacity recorded and printed is the one
    # its own steps give (on a loaded machine no step may hold the budget, and "none" is then the right answer).
    from mcbench.reports.capacity import capacity

    assert variant.capacity == capacity(variant.load, 500, 1000, 2)
    cap = variant.capacity.max_rps_under_budget
    assert "max throughput under p99 500 ms: " + ("none" if cap is None else f"{cap:.0f} req/s") in out
    assert ("replicas for 1000 req/s" in out) == (variant.capacity.replicas is not None)


def test_mcbench_load_unreachable_url_is_exit_2(capsys: pytest.CaptureFixture) -> None:
    from mcbench.cli import main

    assert main(["load", "--url", "http://127.0.0.1:9", "--model", "m"]) == 2
    assert "cannot read model metadata from http://127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.slow
def test_the_python_api_load_tests_a_server_as_the_command_does(server: ServerHandle, tmp_path: Path) -> None:
    import mcbench

    run = mcbench.load(server.url, MODEL, out=tmp_path / "api", quick=True, users=[2],
                       budget_p99_ms=500, progress=None)
    variant = run.variants[0]
    assert variant.status == "ok" and [s.users for s in variant.load.steps] == [2]
    assert run.config["load"]["budget_p99_ms"] == 500 and (tmp_path / "api" / "results.json").is_file()
    assert mcbench.load_results(tmp_path / "api" / "results.json").variants[0].load.steps[0].requests > 0


def test_the_python_api_load_refuses_what_the_command_refuses(tmp_path: Path) -> None:
    import mcbench
    from mcbench.config import LoadPlan

    with pytest.raises(mcbench.UserError, match=r"^mcbench.load: keyword 'users': "):
        mcbench.load("http://127.0.0.1:9", "m", users="many")
    with pytest.raises(mcbench.UserError, match=r"^mcbench.load: keyword 'usres': unknown key"):
        mcbench.load("http://127.0.0.1:9", "m", usres=[1])
    with pytest.raises(mcbench.UserError, match="either plan or load settings"):
        mcbench.load("http://127.0.0.1:9", "m", plan=LoadPlan(), users=[1])
    with pytest.raises(mcbench.UserError, match="cannot read model metadata from http://127.0.0.1:9"):
        mcbench.load("http://127.0.0.1:9", "m", out=tmp_path / "x", progress=None)
    assert not (tmp_path / "x").exists()  # nothing written before the server answered


def test_the_python_api_serves_as_the_command_does(tmp_path: Path) -> None:
    import subprocess
    import sys

    model = make_two_input_onnx(tmp_path / "twoin.onnx")
    code = f"import mcbench; mcbench.serve({str(model)!r}, name='api', instances=2, token='tok')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first, ready = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("serving 'api' on http://127.0.0.1:"), first
        assert ready.startswith("MCBENCH_SERVER_READY port=") and "instances=2" in ready, ready + proc.stderr.read()
        handle = ServerHandle(int(ready.split()[1].split("=")[1]), proc.pid, tmp_path / "log")
        assert call(handle, "/v2/models/api")[0] == 401
        assert call(handle, "/v2/models/api", headers={"Authorization": "Bearer tok"})[0] == 200
    finally:
        proc.terminate()
        code = proc.wait(10)
    # SIGTERM reaches the caller as a KeyboardInterrupt (mcbench.runguard.Terminated), after the server stopped
    assert code == 1 and proc.stderr.read().strip().endswith("Terminated: SIGTERM")


def test_the_python_api_serve_refuses_an_unknown_keyword_and_a_bad_limit(tmp_path: Path) -> None:
    import mcbench

    model = make_two_input_onnx(tmp_path / "twoin.onnx")
    with pytest.raises(mcbench.UserError, match=r"^mcbench.serve: unknown keyword 'max_bach' \(known: "
                                                r"inline_below_ms, instances, max_batch, "):
        mcbench.serve(model, max_bach=4)
    with pytest.raises(mcbench.UserError, match="^serve: instances must be at most 64, got 65$"):
        mcbench.serve(model, instances=65, progress=None)
