"""The model server under hostile or failing conditions: every guard answers at once with a clear status.

A "slow model" is the real server with its `--delay-ms` test hook: each model call also sleeps that long.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.guards import ServerLimits, StartError
from mcbench.bench.launcher import ServerHandle, serve_in_subprocess
from mcbench.bench.load import Endpoint, Generator, LoadError
from mcbench.bench.load_settings import LoadSettings
from mcbench.bench.protocol import encode_infer_request
from mcbench.bench.server_cli import add_server_arguments
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.targets import Target
from tests.conftest import make_linear_onnx

X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def write_spec(tmp: Path, batch: int | str = 1) -> Path:
    artifact = Artifact(make_linear_onnx(tmp / "m.onnx", batch=batch), "onnx", (InputSpec("x", (1, 4)),))
    path = tmp / "spec.json"
    path.write_text(json.dumps({"name": "m", "artifact": artifact.to_dict(),
                                "target": Target("onnxruntime", threads=1).to_dict()}))
    return path


def post(server: ServerHandle, body: bytes, headers: dict[str, str], path: str = "/v2/models/m/infer",
         timeout: float = 20):
    """(status, JSON body or None, response headers)."""
    request = urllib.request.Request(server.url + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, (json.loads(raw) if raw else None), dict(err.headers)


def infer(server: ServerHandle, headers: dict[str, str] | None = None):
    body, base = encode_infer_request({"x": X}, binary=True)
    return post(server, body, {**base, **(headers or {})})


def test_binds_to_loopback_by_default() -> None:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    assert parser.parse_args([]).host == "127.0.0.1"


def test_token_is_required_on_model_routes_but_not_on_health(tmp_path: Path) -> None:
    with serve_in_subprocess(write_spec(tmp_path), None, env={"MCBENCH_SERVER_TOKEN": "s3cret"}) as server:
        status, answer, headers = infer(server)
        assert status == 401 and answer == {"error": "missing or wrong bearer token"}
        assert headers.get("www-authenticate") == "Bearer"
        assert infer(server, {"Authorization": "Bearer wrong"})[0] == 401
        assert infer(server, {"Authorization": "Bearer s3cret"})[0] == 200
        assert post(server, None, {}, "/v2/models/m")[0] == 401
        assert post(server, None, {}, "/v2/health/ready")[0] == 200


def test_body_and_element_limits_and_short_errors(tmp_path: Path) -> None:
    extra = ["--max-body-mb", str(4096 / 2**20)]
    with serve_in_subprocess(write_spec(tmp_path), None, extra=extra) as server:
        status, answer, _ = post(server, b"x" * 5000, {"Content-Type": "application/json"})
        assert status == 400 and answer["error"] == "request body of 5000 bytes is over the limit of 4096"
        long_name = {"inputs": [{"name": "n" * 3000, "shape": [1], "datatype": "FP32", "data": [0.0]}]}
        status, answer, _ = post(server, json.dumps(long_name).encode(), {"Content-Type": "application/json"})
        assert status == 400 and len(answer["error"]) < 120 and "..." in answer["error"]


def test_a_model_over_the_element_limit_is_refused_before_the_body_is_read(tmp_path: Path) -> None:
    """No request for x [1, 4] fits --max-elements 3: the answer comes on the headers, not after reading the body
    (at the 16 Mi limit a 64 MiB body was read, and waited for, only to be refused)."""
    extra = ["--max-elements", "3", "--read-timeout-s", "60"]
    with serve_in_subprocess(write_spec(tmp_path), None, extra=extra) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
            conn.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n")  # and no body
            reply = conn.recv(4096).decode()
            while not reply.endswith("}"):
                reply += conn.recv(4096).decode()
        payload = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}]}
        status, answer, _ = post(server, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    assert reply.startswith("HTTP/1.1 400"), reply
    assert reply.endswith('{"error":"input \'x\': 4 elements, over the server\'s limit of 3"}'), reply
    assert status == 400 and answer["error"] == "input 'x': 4 elements, over the server's limit of 3"


def test_a_client_too_slow_to_send_its_body_gets_408(tmp_path: Path) -> None:
    with serve_in_subprocess(write_spec(tmp_path), None, extra=["--read-timeout-s", "0.5"]) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"inp")
            started = time.monotonic()
            reply = conn.recv(4096).decode()
            while not reply.endswith("}"):  # the body may come in a second packet
                reply += conn.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 408"), reply
        assert "not received within 0.5 s" in reply and time.monotonic() - started < 5


def test_a_client_that_never_finishes_its_headers_is_disconnected(tmp_path: Path) -> None:
    with serve_in_subprocess(write_spec(tmp_path), None, extra=["--read-timeout-s", "0.5"]) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n")  # and nothing more
            started = time.monotonic()
            assert conn.recv(4096) == b""  # closed by the server
        assert time.monotonic() - started < 5
        assert infer(server)[0] == 200  # and it still serves


@pytest.mark.parametrize("dispatch", ["thread", "inline"])
def test_overload_beyond_the_queue_is_503_with_retry_after(tmp_path: Path, dispatch: str) -> None:
    # One request starts a 3 s call, then five arrive together while it runs. An inline call holds the event
    # loop, so the five wait in the socket backlog and are seen together when it ends: sent all six at once
    # instead, a loaded machine spread them so that each found the loop free after the one before (4 x 200).
    extra = ["--delay-ms", "3000", "--max-queue", "1", "--inline-below-ms", "0" if dispatch == "thread" else "10000"]
    with serve_in_subprocess(write_spec(tmp_path), None, extra=extra) as server:
        assert server.dispatch == dispatch
        answers: list[tuple[int, dict, dict]] = []
        together = threading.Barrier(5)

        def send(wait: bool) -> None:
            if wait:
                together.wait(30)
            answers.append(infer(server))

        first = threading.Thread(target=send, args=(False,))
        first.start()
        time.sleep(0.3)
        rest = [threading.Thread(target=send, args=(True,)) for _ in range(5)]
        for t in rest:
            t.start()
        for t in [first, *rest]:
            t.join(60)
        statuses = sorted(a[0] for a in answers)
        busy = [a for a in answers if a[0] == 503]
        assert len(answers) == 6 and set(statuses) == {200, 503}, statuses
        assert statuses.count(200) <= 2 + 1  # one running, one queued (and one that arrived after a slot freed)
        assert busy[0][2].get("retry-after") == "1" and "1 requests already queued" in busy[0][1]["error"]


def test_inference_past_its_timeout_is_504(tmp_path: Path) -> None:
    with serve_in_subprocess(write_spec(tmp_path), None, extra=["--delay-ms", "1500", "--timeout-s", "0.3"]) as server:
        started = time.monotonic()
        status, answer, _ = infer(server)
        assert status == 504 and answer == {"error": "inference did not finish within 0.3 s"}
        assert time.monotonic() - started < 1.4


def test_port_in_use_is_a_start_error_not_a_hang(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        started = time.monotonic()
        with pytest.raises(StartError, match="cannot listen on 127.0.0.1:.*in use"):
            with serve_in_subprocess(write_spec(tmp_path), None, port=taken.getsockname()[1], timeout_s=60):
                pass
        assert time.monotonic() - started < 30


def test_server_not_ready_in_time_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(StartError, match="not ready after 0.01 s"):
        with serve_in_subprocess(write_spec(tmp_path), None, timeout_s=0.01):
            pass


def test_dynamic_batching_joins_concurrent_requests(tmp_path: Path) -> None:
    extra = ["--max-batch", "8", "--max-wait-ms", "50", "--delay-ms", "50"]
    with serve_in_subprocess(write_spec(tmp_path, batch="batch"), None, extra=extra) as server:
        single = infer(server)[1]["outputs"][0]["data"]
        answers: list = []
        threads = [threading.Thread(target=lambda: answers.append(infer(server))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert [a[0] for a in answers] == [200] * 8
        assert all(a[1]["outputs"][0]["data"] == single and a[1]["outputs"][0]["shape"] == [1, 3] for a in answers)
        stats = post(server, None, {}, "/v2/stats")[1]
        assert stats["batched_requests"] == 9 and stats["batches"] < 9


def test_a_fast_model_runs_on_the_event_loop(tmp_path: Path) -> None:
    with serve_in_subprocess(write_spec(tmp_path), None) as server:
        assert server.dispatch == "inline" and 0 < server.model_ms < 1.0
        status, answer, _ = infer(server)
        assert status == 200 and answer["outputs"][0]["shape"] == [1, 3]
        stats = post(server, None, {}, "/v2/stats")[1]
        assert (stats["dispatch"], stats["inline_calls"], stats["thread_calls"]) == ("inline", 1, 0)


@pytest.mark.parametrize("extra", [["--inline-below-ms", "0"], ["--delay-ms", "20"]])
def test_a_slow_model_or_inline_off_keeps_every_call_in_the_thread(tmp_path: Path, extra: list[str]) -> None:
    with serve_in_subprocess(write_spec(tmp_path), None, extra=extra) as server:
        assert server.dispatch == "thread"
        assert infer(server)[0] == 200
        stats = post(server, None, {}, "/v2/stats")[1]
        assert (stats["dispatch"], stats["inline_calls"], stats["thread_calls"]) == ("thread", 0, 1)


def test_more_instances_than_the_serving_limit_is_a_start_error() -> None:
    """The flag has the bound a results file's serving configuration has (bench.serving.MAX_INSTANCES)."""
    with pytest.raises(StartError, match="instances must be at most 64, got 65"):
        ServerLimits(instances=65)
    assert ServerLimits(instances=64).instances == 64


def test_negative_inline_threshold_is_a_start_error() -> None:
    with pytest.raises(StartError, match="inline_below_ms cannot be negative"):
        ServerLimits(inline_below_ms=-1)


def test_batching_a_fixed_batch_model_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(StartError, match=r"--max-batch: input 'x' has a fixed batch dimension \(axis 0 is 1 in the "
                                         r"model\): the model runs only at the batch size it was exported with"):
        with serve_in_subprocess(write_spec(tmp_path, batch=1), None, extra=["--max-batch", "4"], timeout_s=60):
            pass


def test_a_locust_that_dies_is_a_load_error_not_a_hang(tmp_path: Path) -> None:
    gen = Generator(None, 0, tmp_path)
    started = time.monotonic()
    with pytest.raises(LoadError, match="Locust exited with code"):
        gen.run(Endpoint("http://127.0.0.1:9", "m"), LoadSettings(seconds=1), "NoSuchUser", 1, 1, "dead")
    assert time.monotonic() - started < 60


def test_a_server_that_cannot_start_is_the_variants_recorded_error(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mcbench.config import QUICK_LOAD, RunConfig
    from mcbench.load_stage import load_test
    from mcbench.plan import Plan
    from mcbench.reports.schema import VariantResult
    from mcbench.run_state import Candidate, Reference, RunPaths

    spec = SimpleNamespace(name="m", target=Target("onnxruntime"), profile=None)
    artifact = Artifact(tmp_path / "missing.onnx", "onnx", (InputSpec("x", (1, 4)),))
    workload = SimpleNamespace(eval_samples=[{"x": X}], timing_feeds={"x": X})
    result = VariantResult("m", "onnxruntime", [], status="ok")
    started = time.monotonic()
    state = SimpleNamespace(config=RunConfig(load=QUICK_LOAD), plan=Plan([]), workload=workload,
                            paths=RunPaths(tmp_path / "run"), reference=Reference(), say=lambda _: None)
    load_test(state, Candidate(spec, artifact, None), result)
    assert result.status == "failed" and result.load is None
    assert result.error.startswith("load test: StartError: model server exited with code")
    assert time.monotonic() - started < 60
