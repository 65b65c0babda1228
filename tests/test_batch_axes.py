"""Dynamic batching for models whose batch axis is not first, or that take an input without one.

The model here is laid out like Silero VAD: x [N, 4], a state [2, N, 3] (batch axis 1) and a 0-d int64 `sr`; its
outputs are y [N, 1] and the next state [2, N, 3] (batch axis 1). Each answer depends on its own request's x, state and
sr, so a request joined on the wrong axis, or with another value of sr, gets another answer.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.guards import StartError
from mcbench.bench.launcher import ServerHandle, serve_in_subprocess
from mcbench.bench.protocol import HEADER_LENGTH, decode_infer_response, encode_infer_request
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.targets import Target
from tests.conftest import save_graph

SPECS = (InputSpec("x", (1, 4)), InputSpec("state", (2, 1, 3), batch_axis=1),
         InputSpec("sr", (), "int64", value=16000))


def make_state_axis1_onnx(path: Path) -> Path:
    """sign = 1 where sr == 16000 else -1; y = sum(x) * sign + state[0, :, 0]; state_out = state * sign + sum(x).
    Only row-wise operations: a batched call answers each row bit for bit as a call alone does."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value, dtype) -> object:
        return numpy_helper.from_array(np.array(value, dtype), name)

    nodes = [
        helper.make_node("Equal", ["sr", "rate"], ["is16k"]),
        helper.make_node("Where", ["is16k", "plus", "minus"], ["sign"]),
        helper.make_node("ReduceSum", ["x", "axis1"], ["xs"], keepdims=1),
        helper.make_node("Slice", ["state", "starts", "ends"], ["s001"]),
        helper.make_node("Squeeze", ["s001", "axis0"], ["ss1"]),
        helper.make_node("Mul", ["xs", "sign"], ["xsign"]),
        helper.make_node("Add", ["xsign", "ss1"], ["y"]),
        helper.make_node("Mul", ["state", "sign"], ["ssign"]),
        helper.make_node("Add", ["ssign", "xs"], ["state_out"]),
    ]
    graph = helper.make_graph(
        nodes, "state_axis1",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 3]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, "batch", 3])],
        initializer=[const("rate", 16000, np.int64), const("plus", 1.0, np.float32),
                     const("minus", -1.0, np.float32), const("axis0", [0], np.int64), const("axis1", [1], np.int64),
                     const("starts", [0, 0, 0], np.int64), const("ends", [1, 2**62, 1], np.int64)],
    )
    return save_graph(graph, path)


def write_spec(tmp: Path, model: Path, specs: tuple[InputSpec, ...] = SPECS) -> Path:
    path = tmp / "spec.json"
    path.write_text(json.dumps({"name": "m", "artifact": Artifact(model, "onnx", specs).to_dict(),
                                "target": Target("onnxruntime", threads=1).to_dict()}))
    return path


def requests_of(count: int, rates: tuple[int, ...] = (16000,)) -> list[dict[str, np.ndarray]]:
    """`count` requests, each with its own x and state, their sr taken in turn from `rates`."""
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((1, 4)).astype(np.float32),
             "state": rng.standard_normal((2, 1, 3)).astype(np.float32),
             "sr": np.array(rates[i % len(rates)], np.int64)} for i in range(count)]


def unbatched(model: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What an unbatched call of the model answers: one request, one call."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))


def infer(server: ServerHandle, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    body, headers = encode_infer_request(feeds, binary=True, binary_answer=True)
    request = urllib.request.Request(server.url + "/v2/models/m/infer", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return decode_infer_response(response.read(), response.headers.get(HEADER_LENGTH))


def concurrent_answers(server: ServerHandle, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    answers: list = [None] * len(requests)

    def send(i: int) -> None:
        answers[i] = infer(server, requests[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def stats(server: ServerHandle) -> dict:
    with urllib.request.urlopen(server.url + "/v2/stats", timeout=10) as response:
        return json.loads(response.read())


def assert_same(answers: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]]) -> None:
    for got, want in zip(answers, expected, strict=True):
        assert got is not None and got.keys() == want.keys()
        for name in want:
            assert got[name].shape == want[name].shape, name
            np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("max_batch", [4, 8])
def test_a_batched_server_answers_a_state_on_axis_1_as_an_unbatched_call(tmp_path: Path, max_batch: int) -> None:
    model = make_state_axis1_onnx(tmp_path / "m.onnx")
    requests = requests_of(8)
    extra = ["--max-batch", str(max_batch), "--max-wait-ms", "50", "--delay-ms", "50"]
    with serve_in_subprocess(write_spec(tmp_path, model), None, extra=extra) as server:
        answers = concurrent_answers(server, requests)
        counted = stats(server)
    assert_same(answers, [unbatched(model, r) for r in requests])
    assert counted["batched_requests"] == 8 and counted["batches"] < 8  # they were joined


def test_requests_with_different_constants_are_answered_each_with_its_own(tmp_path: Path) -> None:
    model = make_state_axis1_onnx(tmp_path / "m.onnx")
    requests = requests_of(8, rates=(16000, 8000))
    extra = ["--max-batch", "8", "--max-wait-ms", "50", "--delay-ms", "50"]
    with serve_in_subprocess(write_spec(tmp_path, model), None, extra=extra) as server:
        answers = concurrent_answers(server, requests)
        counted = stats(server)
    assert_same(answers, [unbatched(model, r) for r in requests])
    assert counted["batched_requests"] == 8 and counted["batches"] >= 2  # one batch a value of sr, at least


@pytest.mark.slow
def test_silero_vad_batched_answers_each_stream_as_unbatched(tmp_path: Path) -> None:
    from mcbench.optimizer.intake import load_onnx, parse_constants, parse_inputs, with_constants
    from tests.packaged_models import packaged_model

    model = packaged_model("silero-vad") / "silero_vad.onnx"
    artifact = with_constants(load_onnx(model, parse_inputs(["input=1,512", "state=2,1,128"])),
                              parse_constants(["sr=16000"]))
    rng = np.random.default_rng(2)
    requests = [{"input": (rng.standard_normal((1, 512)) * 0.1).astype(np.float32),
                 "state": (rng.standard_normal((2, 1, 128)) * 0.5).astype(np.float32),
                 "sr": np.array(16000, np.int64)} for _ in range(8)]
    extra = ["--max-batch", "4", "--max-wait-ms", "50", "--delay-ms", "50"]
    with serve_in_subprocess(write_spec(tmp_path, model, artifact.inputs), None, extra=extra) as server:
        answers = concurrent_answers(server, requests)
        counted = stats(server)
    for got, want in zip(answers, [unbatched(model, r) for r in requests], strict=True):
        for name in want:  # a batched call may round differently from one alone: close, not bit for bit
            assert got[name].shape == want[name].shape, name
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)
    assert counted["batches"] < 8


def test_batching_a_model_whose_output_does_not_grow_with_the_batch_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0)], "total",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [])])
    model = save_graph(graph, tmp_path / "total.onnx")
    spec = write_spec(tmp_path, model, (InputSpec("x", (1, 4)),))
    with pytest.raises(StartError, match=r"output 'total' is \[\] for one request and \[\] for a batch of 2"):
        with serve_in_subprocess(spec, None, extra=["--max-batch", "4"], timeout_s=60):
            pass


def make_time_major_onnx(path: Path) -> Path:
    """A CTC recogniser's layout: x [N, 4] -> logits [T=3, N, 4] (step t is x * (t + 1)), batch axis 1."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["x", "axis0"], ["x1"]), helper.make_node("Mul", ["x1", "steps"], ["logits"])],
        "time_major",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [3, "batch", 4])],
        initializer=[numpy_helper.from_array(np.array([0], np.int64), "axis0"),
                     numpy_helper.from_array(np.arange(1, 4, dtype=np.float32).reshape(3, 1, 1), "steps")])
    return save_graph(graph, path)


def test_a_time_major_output_is_split_on_its_batch_axis(tmp_path: Path) -> None:
    model = make_time_major_onnx(tmp_path / "seq.onnx")
    rng = np.random.default_rng(3)
    requests = [{"x": rng.standard_normal((1, 4)).astype(np.float32)} for _ in range(6)]
    extra = ["--max-batch", "4", "--max-wait-ms", "50", "--delay-ms", "50"]
    with serve_in_subprocess(write_spec(tmp_path, model, (InputSpec("x", (1, 4)),)), None, extra=extra) as server:
        answers = concurrent_answers(server, requests)
        counted = stats(server)
    assert_same(answers, [unbatched(model, r) for r in requests])
    assert counted["batches"] < 6


def test_the_batcher_joins_only_requests_with_equal_constants_and_keeps_their_order(tmp_path: Path) -> None:
    import asyncio

    import anyio
    import onnxruntime as ort

    from mcbench.bench.batching import BatchAxes, Batcher

    session = ort.InferenceSession(str(make_state_axis1_onnx(tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    calls: list[dict[str, np.ndarray]] = []

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        calls.append(feeds)
        return session.run(None, feeds)

    requests = requests_of(7, rates=(16000, 8000, 8000))  # sr: 16k, 8k, 8k, 16k, 8k, 8k, 16k

    async def answers() -> list[list[np.ndarray]]:
        batcher = Batcher(run, BatchAxes({"x": 0, "state": 1, "sr": None}, (0, 1)), 4, 0.05, anyio.CapacityLimiter(1))
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    got = asyncio.run(answers())
    assert [(c["sr"].item(), c["x"].shape[0], c["state"].shape) for c in calls] == [
        (16000, 3, (2, 3, 3)), (8000, 4, (2, 4, 3))]
    for answer, request in zip(got, requests, strict=True):
        np.testing.assert_array_equal(answer[0], session.run(None, request)[0])
        np.testing.assert_array_equal(answer[1], session.run(None, request)[1])


def test_check_batching_finds_each_outputs_batch_axis(tmp_path: Path) -> None:
    import onnxruntime as ort

    from mcbench.bench.batching import check_batching

    cases = [(make_state_axis1_onnx(tmp_path / "m.onnx"), SPECS, (0, 1)),
             (make_time_major_onnx(tmp_path / "seq.onnx"), (InputSpec("x", (1, 4)),), (1,))]
    for model, specs, outputs in cases:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        feeds = {s.name: s.sample(np.random.default_rng(0)) for s in specs}
        axes = check_batching(OrtRun(session), feeds, Artifact(model, "onnx", specs))
        assert axes.inputs == {s.name: s.batch_axis for s in specs} and axes.outputs == outputs


class OrtRun:
    """An onnxruntime session as the server holds one: run(feeds) and output_names."""

    def __init__(self, session) -> None:
        self.session, self.output_names = session, [o.name for o in session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)


def test_the_serving_search_tries_batching_on_a_model_batched_off_axis_0(tmp_path: Path) -> None:
    from mcbench.serving_stage import batchable
    from tests.conftest import make_linear_onnx

    assert batchable(Artifact(make_state_axis1_onnx(tmp_path / "m.onnx"), "onnx", SPECS))
    assert batchable(Artifact(make_time_major_onnx(tmp_path / "seq.onnx"), "onnx", (InputSpec("x", (1, 4)),)))
    fixed = make_linear_onnx(tmp_path / "fixed.onnx", batch=1)
    assert not batchable(Artifact(fixed, "onnx", (InputSpec("x", (1, 4)),)))
    assert not batchable(Artifact(fixed, "onnx", (InputSpec("x", (1, 4), batch_axis=None),)))


def test_batching_a_model_without_a_batch_axis_is_refused(tmp_path: Path) -> None:
    import onnxruntime as ort

    from mcbench.bench.batching import check_batching

    model = make_time_major_onnx(tmp_path / "seq.onnx")
    specs = (InputSpec("x", (1, 4), batch_axis=None),)
    session = OrtRun(ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]))
    with pytest.raises(StartError, match="^--max-batch: no input of the model has a batch axis, so requests cannot"):
        check_batching(session, {"x": np.ones((1, 4), np.float32)}, Artifact(model, "onnx", specs))
