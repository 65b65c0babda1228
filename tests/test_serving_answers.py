"""Answers for every model that runs in process: every output named and served, binary answers (the KServe v2
binary tensor data extension) on request and by default from the load generator, encoding errors told from
non-finite values, and the server's encoding time in its Server-Timing, the load step and the report."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.launcher import ServerHandle, serve_in_subprocess
from mcbench.bench.load import Endpoint, Requests, run_load
from mcbench.bench.load_plan import LoadPlan
from mcbench.bench.protocol import (
    HEADER_LENGTH,
    AnswerForm,
    BadRequest,
    EncodeError,
    NonFiniteOutput,
    answer_size_error,
    decode_infer_response,
    encode_answer,
    encode_infer_request,
)
from mcbench.bench.request_parsing import parse_infer_request
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.intake import InputOverride
from mcbench.optimizer.targets import Target, open_session
from tests.conftest import save_graph

ONET_INPUT = {"x": InputOverride((1, 3, 48, 48))}  # --model tests.torch_models:onet --input x=1,3,48,48


def split_cores() -> tuple[list[int], list[int]]:
    cores = sorted(os.sched_getaffinity(0))
    return ([cores[0]], [cores[1]]) if len(cores) > 1 else (cores, cores)


def write_spec(tmp: Path, name: str, artifact: Artifact, runtime: str = "onnxruntime") -> Path:
    spec = tmp / f"{name}.json"
    spec.write_text(json.dumps({"name": name, "artifact": artifact.to_dict(),
                                "target": Target(runtime, threads=1).to_dict()}))
    return spec


def post(server: ServerHandle, model: str, body: bytes, headers: dict[str, str]):
    """(status, headers with lower-case names, body) of one infer request; an HTTP error is an answer."""
    request = urllib.request.Request(f"{server.url}/v2/models/{model}/infer", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer_headers, answer = response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        status, answer_headers, answer = err.code, err.headers, err.read()
    return status, {k.lower(): v for k, v in answer_headers.items()}, answer


# ------------------------------------------------------------------ the protocol's answers


def test_a_binary_answer_round_trips_every_output_with_its_datatype() -> None:
    outputs = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([[1, -2]], np.int16), np.array([True, False])]
    names = ["boxes", "ids", "keep"]
    body, headers = encode_answer("m", names, outputs, AnswerForm(binary_default=True))
    header_length = headers[HEADER_LENGTH]
    assert headers["content-type"] == "application/octet-stream"
    assert len(body) == int(header_length) + 6 * 4 + 2 * 2 + 2  # the JSON, then each tensor's bytes in order
    meta = json.loads(body[: int(header_length)])
    assert [(o["name"], o["datatype"], o["parameters"]["binary_data_size"]) for o in meta["outputs"]] == [
        ("boxes", "FP32", 24), ("ids", "INT16", 4), ("keep", "BOOL", 2)]
    decoded = decode_infer_response(body, header_length)
    assert all(np.array_equal(decoded[n], o) and decoded[n].dtype == o.dtype for n, o in zip(names, outputs,
                                                                                            strict=True))
    assert answer_size_error(body, header_length) is None
    assert answer_size_error(body[:-1], header_length) == (
        "malformed binary answer: its binary data is not the size its JSON says")


def test_an_answer_may_mix_forms_and_select_outputs() -> None:
    outputs = [np.ones((2, 2), np.float32), np.zeros(3, np.int64)]
    form = AnswerForm(("b", "a"), False, (("a", True),))  # both asked for; only `a` as binary data
    body, headers = encode_answer("m", ["a", "b"], outputs, form)
    meta = json.loads(body[: int(headers[HEADER_LENGTH])])
    assert [("data" in o, "parameters" in o) for o in meta["outputs"]] == [(False, True), (True, False)]
    only_b, headers = encode_answer("m", ["a", "b"], outputs, AnswerForm(("b",)))
    assert headers == {"content-type": "application/json"}
    assert json.loads(only_b)["outputs"] == [{"name": "b", "shape": [3], "datatype": "INT64", "data": [0, 0, 0]}]


def test_the_request_says_which_outputs_and_in_which_form() -> None:
    specs = (InputSpec("x", (1, 2)),)
    request = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}],
               "parameters": {"binary_data_output": True},
               "outputs": [{"name": "y"}, {"name": "z", "parameters": {"binary_data": False}}]}
    parsed = parse_infer_request(json.dumps(request).encode(), None, specs, ["y", "z"])
    assert parsed.form.outputs == ("y", "z") and parsed.form.wants_binary("y") and not parsed.form.wants_binary("z")
    for change, message in [({"outputs": [{"name": "w"}]}, "unknown output 'w'; the model's outputs are y, z"),
                            ({"parameters": {"binary_data_output": "yes"}},
                             "request: binary_data_output must be true or false, got 'yes'"),
                            ({"outputs": "y"}, "outputs must be a list of objects with a name, got 'y'")]:
        with pytest.raises(BadRequest) as caught:
            parse_infer_request(json.dumps({**request, **change}).encode(), None, specs, ["y", "z"])
        assert str(caught.value) == message


def test_an_encoding_error_is_not_called_non_finite() -> None:
    with pytest.raises(NonFiniteOutput, match=r"^the model's output 'y' holds NaN or infinite values, which JSON"):
        encode_answer("m", ["y"], [np.array([1.0, np.nan], np.float32)], AnswerForm())
    body, headers = encode_answer("m", ["y"], [np.array([1.0, np.inf], np.float32)], AnswerForm(binary_default=True))
    assert np.isinf(decode_infer_response(body, headers[HEADER_LENGTH])["y"][1])  # binary data carries it
    with pytest.raises(EncodeError) as caught:
        encode_answer("m", ["y"], [np.ones(2, np.float32)] * 3, AnswerForm())
    assert not isinstance(caught.value, NonFiniteOutput)
    assert str(caught.value) == "the model returned 3 outputs for its 1 output names (y)"


# ------------------------------------------------------------------ the server, on real runtimes


def make_log_and_text_onnx(path: Path) -> Path:
    """y = log(x) (NaN for x < 0) and text = x cast to strings (a tensor KServe v2 numbers cannot carry)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"]), helper.make_node("Cast", ["x"], ["text"], to=TensorProto.STRING)],
        "logtext", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("text", TensorProto.STRING, [1, 3])])
    return save_graph(graph, path)


def test_the_server_tells_an_encoding_error_from_non_finite_values(tmp_path: Path) -> None:
    artifact = Artifact(make_log_and_text_onnx(tmp_path / "logtext.onnx"), "onnx", (InputSpec("x", (1, 3)),))
    x = {"x": np.array([[1.0, -1.0, 2.0]], np.float32)}

    def ask(outputs: list[dict], binary: bool = False):
        body, headers = encode_infer_request(x, binary=False)
        request = {**json.loads(body), "outputs": outputs, "parameters": {"binary_data_output": binary}}
        return post(server, "lt", json.dumps(request).encode(), headers)

    with serve_in_subprocess(write_spec(tmp_path, "lt", artifact), None) as server:
        nan_json, text, nan_binary = ask([{"name": "y"}]), ask([{"name": "text"}]), ask([{"name": "y"}], True)
    assert nan_json[0] == 500 and json.loads(nan_json[2])["error"] == (
        "the model's output 'y' holds NaN or infinite values, which JSON cannot carry "
        "(ask for binary data: parameters.binary_data_output)")
    assert text[0] == 500 and json.loads(text[2])["error"] == (
        "cannot encode the model's answer: output 'text' is of dtype object, which has no KServe v2 datatype here "
        "(numbers and booleans: FP32, FP16, FP64, INT64, INT32, INT16, INT8, UINT64, UINT32, UINT16, UINT8, BOOL)")
    status, headers, body = nan_binary
    y = decode_infer_response(body, headers[HEADER_LENGTH.lower()])["y"]
    assert status == 200 and np.isnan(y[0, 1]) and y[0, 0] == 0.0 and y[0, 2] == pytest.approx(np.log(2.0))
    assert set(server_timing(headers)) == {"model", "encode", "app"}


def server_timing(headers: dict[str, str]) -> dict[str, float]:
    from mcbench.bench.http_client import parse_server_timing

    return parse_server_timing(headers["server-timing"])


def onet_artifact(tmp: Path) -> Artifact:
    from mcbench.optimizer.intake_torch import from_factory

    return from_factory("tests.torch_models:onet", None, ONET_INPUT, tmp / "onet")


def test_every_output_of_a_torch_module_is_named_in_its_session_and_its_onnx_export(tmp_path: Path) -> None:
    from mcbench.optimizer.passes import PassContext
    from mcbench.optimizer.passes.convert import export_onnx

    artifact = onet_artifact(tmp_path)
    session = open_session(artifact, Target("torch", threads=1))
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 48, 48)).astype(np.float32)}
    outputs = session.run(feeds)
    assert session.output_names == ["output_0", "output_1", "output_2"]
    assert [o.shape for o in outputs] == [(1, 4), (1, 10), (1, 2)]
    assert outputs[2].sum() == pytest.approx(1.0, abs=1e-5)  # the face/not-face softmax is the third
    (tmp_path / "export").mkdir()
    exported = export_onnx(artifact, PassContext(), tmp_path / "export")
    onnx_session = open_session(exported, Target("onnxruntime", threads=1))
    assert onnx_session.output_names == session.output_names
    for mine, theirs in zip(outputs, onnx_session.run(feeds), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-4)


def test_a_three_output_torch_module_serves_every_request_of_its_load_test(tmp_path: Path) -> None:
    """MTCNN's ONet (a PyTorch factory, three outputs): no request fails, and every checked answer holds all three
    outputs equal to the offline ones; the answers came as binary data."""
    artifact = onet_artifact(tmp_path)
    session = open_session(artifact, Target("torch", threads=1))
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, 3, 48, 48)).astype(np.float32)} for _ in range(3)]
    expected = [session.run(f) for f in feeds]  # all three outputs: an answer with fewer is a mismatch
    rules = LoadPlan(step_seconds=3, warmup_s=0.5, max_step_seconds=3, check_every=1)
    server_cores, loadgen_cores = split_cores()
    with serve_in_subprocess(write_spec(tmp_path, "onet", artifact, "torch"), server_cores) as server:
        result = run_load(Endpoint(server.url, "onet"), Requests.encode(feeds, expected), [2], [], rules,
                          loadgen_cores, server_cores, 1, tmp_path / "load")
    step = result.steps[0]
    assert step.requests > 0 and step.failures == 0 and step.errors == {}
    assert result.checked == step.checked == step.requests and result.mismatches == 0
    assert result.answers == "binary" and step.binary_answers == step.requests
    assert 0 <= step.server_encode_p50_ms <= step.server_p50_ms


def test_a_load_tests_expected_answers_hold_every_output_each_at_its_own_batch_axis() -> None:
    """The offline outputs, kept batch first, go back to the model's layout output by output: a [N, 4] head, a
    state whose batch axis is 1 ([2, N, 3] in the model) and an output without one (one row a run)."""
    from types import SimpleNamespace

    from mcbench.load_stage import load_requests

    n = 5
    head, state, no_batch = (np.arange(n * 4.0).reshape(n, 4), np.arange(n * 6.0).reshape(n, 2, 3),
                             np.arange(n * 3.0).reshape(n, 3))
    workload = SimpleNamespace(eval_samples=[{"x": np.full((1, 4), i, np.float32)} for i in range(n)],
                               timing_feeds={})
    requests = load_requests(workload, [head, state, no_batch], count=3, batch_axes=[0, 1, None])
    assert len(requests.expected) == 3
    for i, (h, s, b) in enumerate(requests.expected):
        np.testing.assert_array_equal(h, head[i:i + 1])
        assert s.shape == (2, 1, 3)
        np.testing.assert_array_equal(s[:, 0], state[i])
        np.testing.assert_array_equal(b, no_batch[i])


def test_a_run_load_test_counts_a_wrong_second_output_as_a_wrong_answer(tmp_path: Path) -> None:
    """MTCNN's ONet through the run's load stage (mcbench.load_stage.load_test): its offline outputs as the screen
    keeps them (bench.accuracy.collected), all three checked against every answer. With the second output of one
    of three inputs made wrong, about a third of the checked answers are wrong, and the variant is warned."""
    from types import SimpleNamespace

    from mcbench.bench.accuracy import collected
    from mcbench.config import RunConfig
    from mcbench.load_stage import load_test
    from mcbench.plan import Plan
    from mcbench.reports.schema import VariantResult
    from mcbench.run_state import Candidate, Reference, RunPaths

    artifact = onet_artifact(tmp_path)
    rng = np.random.default_rng(3)
    samples = [{"x": rng.standard_normal((1, 3, 48, 48)).astype(np.float32)} for _ in range(3)]
    (first, second, third), axes = collected(open_session(artifact, Target("torch", threads=1)), samples)
    assert [o.shape for o in (first, second, third)] == [(3, 4), (3, 10), (3, 2)] and axes == [0, 0, 0]
    second = second.copy()
    second[1] += 0.5  # the landmarks of input 1 are wrong; its box and face score are right
    spec = SimpleNamespace(name="onet", target=Target("torch", threads=1), profile=None)
    plan = LoadPlan(users=(1,), step_seconds=3, warmup_s=0.5, max_step_seconds=3, rates=(10.0,), check_every=1)
    state = SimpleNamespace(config=RunConfig(load=plan), plan=Plan([]), paths=RunPaths(tmp_path / "run"),
                            workload=SimpleNamespace(eval_samples=samples, timing_feeds=samples[0]),
                            reference=Reference(), say=lambda _: None)
    result = VariantResult("onet", "torch", [], status="ok")
    load_test(state, Candidate(spec, artifact, first, [second, third], axes), result)
    assert result.status == "ok", result.error
    load = result.load
    assert load.checked > 0 and sum(s.failures for s in load.steps + load.open_steps) == 0
    assert 0 < load.mismatches < load.checked  # input 1's answers, and only they
    assert f"{load.mismatches} of {load.checked} checked answers differed from the variant's offline outputs" in \
        result.warnings


def make_wide_output_onnx(path: Path, shape: tuple[int, ...] = (32, 1, 8210)) -> Path:
    """A recogniser-sized answer: x [1, 4] tiled into `shape` (as ddddocr's [T, 1, 8210] logits), y = x * 1."""
    from onnx import TensorProto, helper

    count = int(np.prod(shape))
    nodes = [helper.make_node("Tile", ["x", "reps"], ["tiled"]),
             helper.make_node("Reshape", ["tiled", "shape"], ["y"])]
    graph = helper.make_graph(
        nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        initializer=[helper.make_tensor("reps", TensorProto.INT64, [2], [1, count // 4]),
                     helper.make_tensor("shape", TensorProto.INT64, [len(shape)], list(shape))])
    return save_graph(graph, path)


@pytest.mark.parametrize("answers", ["binary", "json"])
def test_a_large_outputs_load_test_asks_for_binary_answers_by_default(tmp_path: Path, answers: str) -> None:
    """A [32, 1, 8210] answer: binary data by default, every answer of it; JSON when asked; checked either way."""
    artifact = Artifact(make_wide_output_onnx(tmp_path / "wide.onnx"), "onnx", (InputSpec("x", (1, 4)),))
    feeds = [{"x": np.array([[0.5, -1.0, 2.0, 3.25]], np.float32)}]
    expected = [[np.tile(feeds[0]["x"], (1, 32 * 8210 // 4)).reshape(32, 1, 8210)]]
    rules = LoadPlan(step_seconds=3, warmup_s=0.5, max_step_seconds=3, check_every=2)
    server_cores, loadgen_cores = split_cores()
    requests = Requests.encode(feeds, expected) if answers == "binary" else Requests.encode(feeds, expected, "json")
    with serve_in_subprocess(write_spec(tmp_path, "wide", artifact), server_cores) as server:
        result = run_load(Endpoint(server.url, "wide"), requests, [1], [], rules, loadgen_cores, server_cores, 1,
                          tmp_path / "load")
    step = result.steps[0]
    assert step.requests > 0 and step.failures == 0 and result.checked > 0 and result.mismatches == 0
    assert result.answers == answers
    assert step.binary_answers == (step.requests if answers == "binary" else 0)
    assert 0 < step.server_encode_p50_ms <= step.server_p50_ms


# ------------------------------------------------------------------ what the report and the terminal say


def timed_step(server_ms: float, encode_ms: float):
    from mcbench.reports.schema import LatencyStats, LoadStep

    return LoadStep(users=1, duration_s=2.0, requests=200, failures=0, throughput_rps=100.0,
                    latency=LatencyStats.from_seconds([0.01] * 200), server_timed=200, server_p50_ms=server_ms,
                    server_encode_p50_ms=encode_ms, binary_answers=200)


def test_the_report_says_how_much_of_the_servers_time_is_encoding_only_past_a_tenth() -> None:
    from mcbench.bench.load import encoding_note
    from mcbench.reports.load_view import load_facts
    from mcbench.reports.schema import LoadResult

    def facts(encode_ms: float, answers: str = "binary") -> dict[str, str]:
        load = LoadResult([timed_step(10.0, encode_ms)], [0], [1], False, 1, 200, 0, answers=answers)
        return {f.key: f.value for f in load_facts(load)}

    assert facts(4.5)["encoding the answer"] == ("45% of the server's time a request at the peak step (4.50 ms of "
                                                 "10.0 ms at p50): the throughput is partly the serialiser's")
    assert facts(4.5, "json")["encoding the answer"].endswith("(asking for binary answers would cut it: "
                                                              "--answers binary)")
    assert "encoding the answer" not in facts(1.0)
    assert facts(1.0)["answers"] == ("asked for as binary data (KServe v2 binary tensor extension): 200 of 200 "
                                     "answers came so")
    assert encoding_note(timed_step(10.0, 4.5)) == ", 45% of it encoding the answer"
    assert encoding_note(timed_step(10.0, 1.0)) == ""


@pytest.mark.slow
def test_ddddocrs_recogniser_load_test_uses_binary_answers(tmp_path: Path) -> None:
    """ddddocr's CTC recogniser (one [32, 1, 8210] output for a 256-wide line): every answer binary, all checked
    answers equal to the offline logits."""
    from tests.packaged_models import packaged_model

    path = packaged_model("ddddocr") / "common.onnx"
    artifact = Artifact(path, "onnx", (InputSpec("input1", (1, 1, 64, 256)),))
    rng = np.random.default_rng(2)
    feeds = [{"input1": rng.uniform(0, 1, (1, 1, 64, 256)).astype(np.float32)} for _ in range(2)]
    session = open_session(artifact, Target("onnxruntime", threads=1))
    expected = [session.run(f) for f in feeds]
    assert expected[0][0].shape == (32, 1, 8210)
    rules = LoadPlan(step_seconds=4, warmup_s=1, max_step_seconds=4, check_every=3)
    server_cores, loadgen_cores = split_cores()
    with serve_in_subprocess(write_spec(tmp_path, "ocr", artifact), server_cores) as server:
        result = run_load(Endpoint(server.url, "ocr"), Requests.encode(feeds, expected), [1], [], rules,
                          loadgen_cores, server_cores, 1, tmp_path / "load")
    step = result.steps[0]
    assert step.requests > 0 and step.failures == 0 and result.checked > 0 and result.mismatches == 0
    assert step.binary_answers == step.requests and step.server_encode_p50_ms is not None


@pytest.mark.slow
def test_mcbench_run_on_a_three_output_factory_load_tests_every_variant_without_a_failure(tmp_path: Path) -> None:
    """`mcbench run --model tests.torch_models:onet --input x=1,3,48,48`: the torch baseline and its ONNX export
    both serve every request of their load tests, as binary answers, and the checked answers match."""
    from mcbench.cli import main
    from mcbench.reports.schema import load_results

    out = tmp_path / "run"
    code = main(["run", "--model", "tests.torch_models:onet", "--input", "x=1,3,48,48", "--quick",
                 "--variants", "ort-fp32", "--out", str(out)])
    assert code == 0
    variants = {v.name: v for v in load_results(out / "results.json").variants}
    assert set(variants) == {"torch-fp32", "ort-fp32"}
    for v in variants.values():
        steps = v.load.steps + v.load.open_steps
        assert v.status == "ok" and v.load.answers == "binary" and steps
        assert all(s.requests > 0 and s.failures == 0 and s.binary_answers == s.requests for s in steps), v.name
        assert v.load.checked > 0 and v.load.mismatches == 0
