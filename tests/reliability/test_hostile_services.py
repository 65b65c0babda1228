"""Issue 32, Medium rows on what mcbench talks to: MLflow stores (M6, M7), `serve` (M9, Also), `load --url` (M10),
distributed load (M11, M12) and the server's request bodies (M15, Also)."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from mcbench.bench.launcher import ServerHandle, serve_in_subprocess
from mcbench.cli import main
from tests.conftest import make_linear_onnx
from tests.reliability.test_bad_inputs import _one_line
from tests.reliability.test_server_faults import post, write_spec

JSON = {"Content-Type": "application/json"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- MLflow (M6, M7) ------------------------------------------------------------------------------------------------

mlflow = pytest.importorskip("mlflow")


def test_m6_a_password_in_a_tracking_uri_is_masked():
    from mcbench.tracking import masked

    assert masked("http://alice:s3cretPW@host:5000/path?x=1") == "http://alice:***@host:5000/path?x=1"
    assert masked("https://:tok@host/") == "https://:***@host/"
    assert masked("http://host/a@b") == "http://host/a@b"  # an @ in the path is no password
    assert masked("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def test_m6_m7_an_unreachable_store_fails_in_seconds_without_its_password(tmp_path, capsys, monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # through a proxy only MLflow itself can tell
    uri = f"http://alice:s3cretPW@127.0.0.1:{_free_port()}/"
    model = make_linear_onnx(tmp_path / "m.onnx")
    assert main(["run", "--model", str(model), "--mlflow", uri, "--out", str(tmp_path / "run")]) == 2
    err = _one_line(capsys)
    assert err == f"mcbench: MLflow cannot reach {uri.replace('s3cretPW', '***')}: Connection refused (within 5 s)"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("uri", ["sqlite:////proc/self/mlflow.db", "sqlite:////proc/version/x/mlflow.db"])
def test_m7_a_sqlite_store_that_cannot_be_written_is_one_line_before_the_run(tmp_path, capsys, uri):
    model = make_linear_onnx(tmp_path / "m.onnx")
    assert main(["run", "--model", str(model), "--mlflow", uri, "--out", str(tmp_path / "run")]) == 2
    err = _one_line(capsys)
    assert err.startswith(f"mcbench: MLflow cannot open {uri}: cannot write "), err
    assert not (tmp_path / "run").exists()


def test_m7_a_store_that_accepts_but_does_not_answer_says_it_is_waiting(tmp_path, capsys, monkeypatch):
    """A listening socket nobody accepts from: the connection opens, no answer ever comes."""
    import mcbench.tracking as tracking

    monkeypatch.setattr(tracking, "WAIT_NOTE_S", 0.2)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        results = tmp_path / "results.json"
        from mcbench.reports.schema import save_results
        from tests.test_report import sample_run

        save_results(sample_run(), results)
        assert main(["report", str(results), "--mlflow", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"mlflow:  waiting for {uri} ..."
    assert err[-1].startswith(f"mcbench: MLflow cannot open {uri}: ") and len(err) == 2, err


# --- serve (M9 and Also) ---------------------------------------------------------------------------------------------


def test_m9_serve_gives_a_factory_its_recorded_arguments(tmp_path):
    """A Hugging Face variant is rebuilt by a factory from its recorded config: serve passes factory_args on."""
    pytest.importorskip("transformers")
    from mcbench.local_server import server_spec
    from mcbench.optimizer.intake_hf import from_hf_folder
    from mcbench.optimizer.targets import Target
    from mcbench.reports.schema import save_results
    from tests.test_hf import tiny_bert_folder
    from tests.test_report import sample_run

    artifact = from_hf_folder(tiny_bert_folder(tmp_path / "cls", head="classifier"), "classification", 8, {},
                              tmp_path / "run" / "source")
    run = sample_run()
    torch_variant = run.variants[0]
    torch_variant.artifact = artifact.to_dict()
    torch_variant.settings["in_process"] = Target("torch", threads=1).to_dict()
    save_results(run, tmp_path / "run" / "results.json")
    spec = server_spec(f"{tmp_path / 'run'}:torch-fp32", None, "onnxruntime", 1)
    assert spec["artifact"]["factory_args"]["head"] == "logits"
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    ids = np.array([[2, 5, 6, 3, 0, 0, 0, 0]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64), "token_type_ids": 0 * ids}
    from mcbench.bench.protocol import encode_infer_request

    with serve_in_subprocess(path, None, timeout_s=120) as server:
        body, headers = encode_infer_request(feeds, binary=False)
        status, answer, _ = post(server, body, headers, path="/v2/models/torch-fp32/infer")
    assert status == 200, answer
    assert answer["outputs"][0]["shape"] == [1, 2]


@pytest.mark.parametrize(("flags", "message"), [
    (["--port", "70000"], "serve: --port 70000: give a port from 1 to 65535, or 0 for a free one"),
    (["--token", " tok "], "serve: the token has spaces around it, which an Authorization header cannot carry: no "
                           "request could match it"),
])
def test_also_serve_refuses_a_port_past_65535_and_a_token_that_cannot_match(tmp_path, capsys, flags, message):
    model = make_linear_onnx(tmp_path / "m.onnx")
    assert main(["serve", str(model), *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"mcbench: {message}"


def test_also_sighup_leaves_no_serve_temp_folder(tmp_path):
    model = make_linear_onnx(tmp_path / "m.onnx")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mcbench.cli", "serve", str(model), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(scratch)})
    try:
        assert proc.stdout.readline().startswith("serving 'm'")
        assert proc.stdout.readline().startswith("MCBENCH_SERVER_READY")
        assert len(list(scratch.glob("mcbench-serve-*"))) == 1
        proc.send_signal(signal.SIGHUP)
        code = proc.wait(20)
    finally:
        proc.kill()
        proc.wait()
    assert code == 128 + signal.SIGHUP and list(scratch.glob("mcbench-serve-*")) == []


# --- load --url against hostile metadata (M10) -----------------------------------------------------------------------


@pytest.fixture
def metadata_server() -> Iterator[tuple[str, dict]]:
    """An HTTP server that answers GET /v2/models/m with whatever `answer["body"]` holds."""
    answer: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            raw = answer["body"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self):  # noqa: N802
            self.wfile.write(answer.get("post", b"NOT HTTP\r\n\r\n"))  # no status line: not an HTTP answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answer
    finally:
        server.shutdown()


def _meta(shape: object, datatype: str = "FP32") -> bytes:
    return json.dumps({"name": "m", "inputs": [{"name": "x", "datatype": datatype, "shape": shape}]}).encode()


@pytest.mark.parametrize(("body", "message"), [
    (_meta([100000, 100000]), "input 'x' of shape [100000, 100000] is 10000000000 elements, over the limit of "
                              "2097152 elements per input (set MCBENCH_MAX_INPUT_ELEMENTS to raise it)"),
    (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested more than 64 levels deep"),
    (_meta([1, "a"]), "input 'x' has shape [1, 'a'], not a list of dimensions (whole numbers, -1 for a dynamic "
                      "one)"),
    (_meta([1, -7]), "input 'x' has shape [1, -7], not a list of dimensions (whole numbers, -1 for a dynamic one)"),
    (b'{"inputs": [1]}', "an input is not an object with a name"),
    (b"[]", "lists no inputs, which mcbench makes its requests from (MLServer lists them only where the model's "
            "model-settings.json declares them)"),
])
def test_m10_load_url_takes_the_local_limits_and_one_line_errors(metadata_server, capsys, tmp_path, body, message):
    url, answer = metadata_server
    answer["body"] = body
    assert main(["load", "--url", url, "--model", "m", "--out", str(tmp_path / "out")]) == 2
    assert _one_line(capsys) == f"mcbench: load: the metadata of 'm' at {url}: {message}"
    assert not (tmp_path / "out").exists()


def test_m10_a_first_request_answered_with_garbage_is_a_line_not_a_traceback(metadata_server):
    from mcbench.remote_load import request_form

    url, _ = metadata_server
    said: list[str] = []
    assert request_form(url, "m", {"x": np.ones((1, 4), np.float32)}, {}, "binary", said.append) == "binary"
    assert said == ["the server answered neither form of a first request (binary data: no answer: BadStatusLine: "
                    "NOT HTTP; JSON: no answer: BadStatusLine: NOT HTTP); the load test goes on and records the errors"]


# --- distributed load (M11, M12) -------------------------------------------------------------------------------------


def test_m11_a_master_port_in_use_is_one_line_before_the_test(capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["load", "--url", "http://127.0.0.1:9", "--model", "m", "--workers", "1",
                     "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]) == 2
    assert _one_line(capsys) == (f"mcbench: load: the master cannot listen on 127.0.0.1:{port} (Address already in "
                                 "use); choose another --master-bind-host or --master-bind-port")


def test_m11_an_address_not_on_this_host_is_one_line(capsys):
    assert main(["load", "--url", "http://127.0.0.1:9", "--model", "m", "--workers", "1",
                 "--master-bind-host", "203.0.113.7"]) == 2
    assert _one_line(capsys) == ("mcbench: load: the master cannot listen on 203.0.113.7:5557 (Cannot assign "
                                 "requested address); choose another --master-bind-host or --master-bind-port")


def test_m12_load_worker_processes_and_cores_are_bounded_by_this_host(capsys):
    cores = sorted(os.sched_getaffinity(0))
    assert main(["load-worker", "--master", "127.0.0.1", "--processes", "100000"]) == 2
    assert _one_line(capsys) == (f"mcbench: load-worker: --processes must be 1 to {len(cores)} (the cores this "
                                 "machine lets it use), got 100000")
    assert main(["load-worker", "--master", "127.0.0.1", "--cores", "999"]) == 2
    assert _one_line(capsys) == (f"mcbench: load-worker: --cores: core 999 is not one this machine lets mcbench use "
                                 f"({', '.join(map(str, cores))})")
    assert main(["load", "--url", "http://127.0.0.1:9", "--model", "m", "--cores", "999"]) == 2
    assert _one_line(capsys).startswith("mcbench: load: --cores: core 999 is not one this machine")


# --- request bodies (M15 and Also) ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerHandle]:
    with serve_in_subprocess(write_spec(tmp_path_factory.mktemp("m15")), None) as handle:
        yield handle


def test_m15_a_body_too_large_for_the_models_inputs_is_refused_before_it_is_parsed(server):
    """x is [1, 4]: no request for it needs more than 1 MiB + 32 bytes a value; 16 MiB of `[]` is not parsed."""
    size = 16 * 2**20
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:  # the headers, not the body
        sock.sendall(f"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode() + b"[[],[],")
        response = http.client.HTTPResponse(sock)
        response.begin()
        status, answer = response.status, json.loads(response.read())
    assert (status, answer) == (400, {"error": f"request body of {size} bytes is over the limit of 1048704"})
    assert post(server, None, {}, "/v2/health/ready")[0] == 200


def test_m15_a_body_of_many_arrays_is_refused_before_parsing():
    from mcbench.bench.protocol import BadRequest
    from mcbench.bench.request_parsing import MAX_CONTAINERS, decode_infer_request
    from mcbench.optimizer.artifact import InputSpec

    raw = b"[" + b"[]," * MAX_CONTAINERS + b"[]]"
    with pytest.raises(BadRequest, match=f"^request body holds {MAX_CONTAINERS + 2} arrays and objects "
                                            f"\\(at most {MAX_CONTAINERS}\\)$"):
        decode_infer_request(raw, None, (InputSpec("x", (1, 2**22)),))


@pytest.mark.parametrize(("extra", "message"), [
    ({"outputs": "y"}, "outputs must be a list of objects with a name, got 'y'"),
    ({"outputs": [{"nom": "y"}]}, "outputs must be a list of objects with a name, got [{'nom': 'y'}]"),
    ({"parameters": [1]}, "parameters must be an object, got [1]"),
    ({"id": 5}, "id must be a string, got 5"),
    ({"input": []}, "unknown key 'input' (a request has id, parameters, inputs, outputs)"),
])
def test_also_the_rest_of_the_request_is_checked_as_strictly_as_its_inputs(server, extra, message):
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], **extra}
    status, answer, _ = post(server, json.dumps(body).encode(), JSON)
    assert (status, answer["error"]) == (400, message)
    good = {"inputs": body["inputs"], "outputs": [{"name": "y"}], "id": "a", "parameters": {}}
    assert post(server, json.dumps(good).encode(), JSON)[0] == 200


def test_also_a_negative_input_range_can_be_written():
    from mcbench.optimizer.intake import IntakeError, parse_inputs

    assert parse_inputs(["x=1,4:int64:-128-127"])["x"].low == -128
    assert (parse_inputs(["x=1,4:int64:-10--1"])["x"].low, parse_inputs(["x=1,4:int64:-10--1"])["x"].high) == (-10, -1)
    with pytest.raises(IntakeError, match=r"^--input 'x=1,4:int64:a-b': the range 'a-b' is not LOW-HIGH in whole "
                                          r"numbers \(e.g. 0-255, -128-127 or -10--1\)$"):
        parse_inputs(["x=1,4:int64:a-b"])
    with pytest.raises(IntakeError, match=r"^--input 'x=1:int64:a': the range 'a' is not LOW-HIGH"):
        parse_inputs(["x=1:int64:a"])
