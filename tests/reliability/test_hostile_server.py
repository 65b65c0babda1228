"""Issue 20, server rows S1-S6 and S8: hostile request bodies get a short 400, and the server keeps serving."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.launcher import ServerHandle, serve_in_subprocess
from tests.reliability.test_server_faults import infer, post, write_spec

JSON = {"Content-Type": "application/json"}


def body(**entry) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", **entry}]}).encode()


def binary_body(payload: bytes, size: object = 16, extra: str = "") -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": size}}]}).encode()
    return header + payload, {"Content-Type": "application/octet-stream",
                              "Inference-Header-Content-Length": extra or str(len(header))}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> ServerHandle:
    with serve_in_subprocess(write_spec(tmp_path_factory.mktemp("hostile")), None) as handle:
        yield handle


def refused(server: ServerHandle, raw: bytes, headers: dict[str, str] = JSON) -> str:
    """The error of a 400 answer, after checking the server still serves and answered with a short message."""
    status, answer, _ = post(server, raw, headers)
    assert status == 400, (status, answer)
    assert post(server, None, {}, "/v2/health/ready")[0] == 200
    assert len(answer["error"]) < 200, answer
    return answer["error"]


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"inputs":[{"name":["x"],"shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}', "unknown input ['x']"),
    (b'{"inputs":[{"name":{"a":1},"shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}', "unknown input {'a': 1}"),
    (body(data=[1, 2, 3, 4], parameters=[1]), "parameters must be an object, got [1]"),
    (body(data=[1, 2, 3, 4], parameters="abc"), "parameters must be an object, got 'abc'"),
    (body(parameters={"binary_data_size": 16.0}), "binary_data_size must be a non-negative integer, got 16.0"),
    (b"[" * 100_000, "request body is nested too deeply"),
    (b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[' + b"7" * 5000 + b',1,2,3]}]}',
     "request body holds a number too long to read"),
    (b'{"inputs":[{"name":"x","shape":[' + b",".join([b"9" * 4000] * 3) + b'],"datatype":"FP32","data":[1]}]}',
     "input 'x': shape [99999"),
])
def test_s1_malformed_bodies_are_a_short_400(server: ServerHandle, raw: bytes, message: str) -> None:
    assert message in refused(server, raw)


@pytest.mark.parametrize("raw", [
    b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[NaN,1,2,3]}]}',
    b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[Infinity,1,2,3]}]}',
    b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[null,1,2,3]}]}',
    b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1e39,1,2,3]}]}',
])
def test_s2_non_finite_json_numbers_are_refused(server: ServerHandle, raw: bytes) -> None:
    error = refused(server, raw)
    assert "not accepted" in error or "found None" in error


def test_s2_nan_in_the_binary_payload_is_refused(server: ServerHandle) -> None:
    raw, headers = binary_body(np.array([np.nan, 1, 2, 3], dtype="<f4").tobytes())
    expected = "input 'x': NaN or infinite values (or values past FP32's range) are not accepted"
    assert refused(server, raw, headers) == expected


@pytest.mark.parametrize(("raw", "headers"), [
    (body(parameters={"binary_data_size": "s" * 2**19}), JSON),  # under the 1 MiB this model's bodies may take
    (body(parameters={"binary_data_size": list(range(2000))}), JSON),
    (b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":1'
     + b"0" * 4000 + b"}}]}", JSON),
    (body(data=[1, 2, 3, 4]), {"Content-Type": "application/octet-stream",
                               "Inference-Header-Content-Length": "9" * 5000}),
    (b'{"inputs":[{"name":"x","shape":[1' + b"0" * 4299 + b'],"datatype":"FP32","data":[1]}]}', JSON),
])
def test_s3_errors_quote_only_a_few_dozen_characters(server: ServerHandle, raw: bytes, headers) -> None:
    status, answer, response_headers = post(server, raw, headers)
    assert status == 400 and len(answer["error"]) < 160, answer
    assert int(response_headers["content-length"]) < 200


@pytest.mark.parametrize(("data", "message"), [
    (["1", "2", "3", "4"], "data must be a flat list of FP32 values, found '1'"),
    ([True, False, True, False], "data must be a flat list of FP32 values, found True"),
    ([[1, 2], [3, 4]], "2 values, shape [1, 4] needs 4"),
])
def test_s4_data_is_a_flat_list_of_the_declared_type(server: ServerHandle, data, message: str) -> None:
    assert refused(server, body(data=data)) == f"input 'x': {message}"


def test_s4_trailing_binary_bytes_are_an_error(server: ServerHandle) -> None:
    raw, headers = binary_body(bytes(16 + 100))
    assert refused(server, raw, headers) == "100 bytes of binary data after the last input's binary_data_size"


def test_s5_binary_size_errors_say_what_is_wrong(server: ServerHandle) -> None:
    raw, headers = binary_body(bytes(16), size="16")
    assert refused(server, raw, headers) == "input 'x': binary_data_size must be a non-negative integer, got '16'"
    raw, headers = binary_body(bytes(12))
    assert refused(server, raw, headers) == "input 'x': binary data is 12 bytes, binary_data_size says 16"
    raw, headers = binary_body(bytes(12), size=12)
    assert refused(server, raw, headers) == "input 'x': binary_data_size is 12 bytes, shape [1, 4] of FP32 needs 16"


def test_s6_the_count_is_checked_before_the_data_is_converted(server: ServerHandle) -> None:
    # 600 KB: under the size a body for x [1, 4] may take (1 MiB + 32 bytes a value; past it: refused unread)
    big = b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[' + b"0," * 300_000 + b'0]}]}'
    answers: list[tuple] = []
    threads = [threading.Thread(target=lambda: answers.append(post(server, big, JSON))) for _ in range(3)]
    for t in threads:
        t.start()
    health = post(server, None, {}, "/v2/health/live")[0]  # answered while the bodies are parsed
    for t in threads:
        t.join(60)
    assert health == 200
    assert [a[1]["error"] for a in answers] == ["input 'x': 300001 values, shape [1, 4] needs 4"] * 3
    assert infer(server)[0] == 200


def test_s1_bad_bodies_leave_no_traceback_in_the_server_log(server: ServerHandle) -> None:
    for _ in range(50):
        refused(server, b"[" * 100_000)
        refused(server, body(parameters={"binary_data_size": 16.0}))
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and len(log) < 2000, log[-500:]


def test_s8_a_utf8_token_works(tmp_path: Path) -> None:
    token = "pässwörd"
    with serve_in_subprocess(write_spec(tmp_path), None, env={"MCBENCH_SERVER_TOKEN": token}) as handle:
        raw, headers = binary_body(np.ones(4, dtype="<f4").tobytes())
        statuses = []
        for sent in (token.encode("utf-8"), token.encode("latin-1")):
            conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=20)
            conn.putrequest("POST", "/v2/models/m/infer")
            for key, value in {**headers, "Content-Length": str(len(raw))}.items():
                conn.putheader(key, value)
            conn.putheader("Authorization", b"Bearer " + sent)
            conn.endheaders(raw)
            statuses.append(conn.getresponse().status)
            conn.close()
        assert statuses == [200, 401]


def test_s7_serve_takes_input_shapes_for_a_dynamic_model(tmp_path: Path) -> None:
    from mcbench.cli import build_parser
    from mcbench.local_server import server_spec
    from tests.conftest import make_linear_onnx

    model = make_linear_onnx(tmp_path / "tinydyn.onnx", batch="batch")
    args = build_parser().parse_args(["serve", str(model), "--input", "x=1,4"])
    spec = server_spec(args.model, args.name, args.runtime, args.threads, args.input)
    assert spec["artifact"]["inputs"][0]["shape"] == [1, 4]
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({**spec, "name": "m"}))
    with serve_in_subprocess(spec_path, None, extra=["--max-batch", "4"]) as handle:
        assert infer(handle)[0] == 200


@pytest.mark.parametrize("location", ["/etc/passwd", "../../x", "link.bin"])
def test_s9_serving_a_run_variant_checks_its_model_like_intake(tmp_path: Path, capsys, model_dir, location) -> None:
    from mcbench.cli import main
    from tests.reliability.conftest import write_run_file
    from tests.test_intake import _with_external_location

    out = tmp_path / "run"
    assert main(["run", "--config", str(write_run_file(tmp_path, model_dir / "linear.onnx", ["ort-fp32"])),
                 "--out", str(out), "--no-cache"]) == 0
    capsys.readouterr()
    (tmp_path / "evil").mkdir()
    evil = _with_external_location(tmp_path / "evil", location)
    if location == "link.bin":
        (evil.parent / "link.bin").symlink_to("/etc/passwd")
    results = json.loads((out / "results.json").read_text())
    for variant in results["variants"]:
        if variant["artifact"]:
            variant["artifact"]["path"] = str(evil)
    (out / "results.json").write_text(json.dumps(results))
    assert main(["serve", f"{out}:ort-fp32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mcbench: cannot load {evil}: external data {location!r} points outside the model folder", err
