"""Every input can be given: --const, each input's batch axis, 0-d arrays in a dataset, generated-input rules."""

from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.datasets import DatasetError, Samples, load_npz
from mcbench.bench.measure import batched, repeated
from mcbench.optimizer.artifact import InputError, InputSpec, generated_inputs, how_generated
from mcbench.optimizer.intake import (
    InputConstant,
    IntakeError,
    batch_axes,
    load_onnx,
    parse_constants,
    parse_inputs,
    with_constants,
)
from tests.conftest import save_graph


def make_stateful_onnx(path: Path, batch: str = "") -> Path:
    """A Silero-VAD-shaped graph: x [N, 4] and state [2, N, 3] floats, sr a 0-d int64 that picks a branch.

    y = x where sr == 16000, else -x; state_out = state + 1. `batch` names the batch dims ("" leaves them unnamed,
    as Silero's export does)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Equal", ["sr", "rate"], ["is16k"]), helper.make_node("Neg", ["x"], ["minus"]),
         helper.make_node("Where", ["is16k", "x", "minus"], ["y"]), helper.make_node("Add", ["state", "one"], ["s"])],
        "stateful",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, batch, 3]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, batch, 3])],
        initializer=[numpy_helper.from_array(np.array(16000, np.int64), "rate"),
                     numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    return save_graph(graph, path)


SHAPES = ["x=1,4", "state=2,1,3"]


@pytest.fixture
def stateful(tmp_path):
    return load_onnx(make_stateful_onnx(tmp_path / "stateful.onnx"), parse_inputs(SHAPES))


# --- --const ------------------------------------------------------------------------------------------------------

def test_parse_constants_reads_integers_floats_booleans_and_dtype():
    assert parse_constants(["sr=16000", "t=0.5:float32", "flag=true", "n=-3:int64"]) == {
        "sr": InputConstant(16000), "t": InputConstant(0.5, "float32"), "flag": InputConstant(True),
        "n": InputConstant(-3, "int64")}


@pytest.mark.parametrize("bad", ["sr", "=3", "sr=", "sr=abc", "sr=nan", "sr=inf", "sr=1,2"])
def test_parse_constants_refuses_malformed(bad):
    with pytest.raises(IntakeError, match=r"^--const .*: expected NAME=VALUE\[:DTYPE\], VALUE a number or true/false$"):
        parse_constants([bad])


def test_parse_constants_refuses_unknown_dtype():
    with pytest.raises(IntakeError, match="dtype 'int128' is not one of float32"):
        parse_constants(["sr=1:int128"])


def test_with_constants_sets_the_value_that_every_generated_input_takes(stateful):
    model = with_constants(stateful, parse_constants(["sr=16000"]))
    feeds = generated_inputs(model.inputs, 3)
    assert [f["sr"].item() for f in feeds] == [16000] * 3
    assert all(f["sr"].shape == () and f["sr"].dtype == np.int64 for f in feeds)
    assert feeds[0]["x"].shape == (1, 4) and feeds[0]["state"].shape == (2, 1, 3)


@pytest.mark.parametrize("const, problem", [
    ("rate=1", "--const names rate, not among the model's inputs (x, state, sr)"),
    ("sr=16000:int32", "--const sr=16000: says int32, the model takes int64"),
    ("sr=0.5", "--const sr=0.5: the input is int64; give an integer"),
    ("sr=99999999999999999999", "--const sr=99999999999999999999: out of int64's range"),
    ("x=true", None),
])
def test_with_constants_refuses_what_the_model_cannot_take(stateful, const, problem):
    if problem is None:  # a bool given to a float input is the number 1.0
        assert with_constants(stateful, parse_constants([const])).inputs[0].value == 1.0
        return
    with pytest.raises(IntakeError, match="^" + problem.replace("(", r"\(").replace(")", r"\)")):
        with_constants(stateful, parse_constants([const]))


# --- batch axes and inputs that select a branch ------------------------------------------------------------------

def test_load_onnx_finds_each_inputs_batch_axis_and_the_branch_input(stateful):
    x, state, sr = stateful.inputs
    assert (x.batch_axis, state.batch_axis, sr.batch_axis) == (0, 1, None)
    assert (x.selects_branch, state.selects_branch, sr.selects_branch) == (False, False, True)
    assert state.batch == 1 and sr.batch == 1


def test_batch_axis_follows_the_first_inputs_symbolic_name(tmp_path):
    model = load_onnx(make_stateful_onnx(tmp_path / "named.onnx", batch="batch"), parse_inputs(SHAPES))
    assert [s.batch_axis for s in model.inputs] == [0, 1, None]


def test_batch_axes_rules():
    assert batch_axes([["N", 4], [2, "N", 3], []]) == [0, 1, None]
    assert batch_axes([["", 4], [2, "", 3]]) == [0, 1]
    assert batch_axes([["", 4], ["", "", 3]]) == [0, 0]  # two open axes: no guess, the first
    assert batch_axes([[1, 4], [2, "", 3]]) == [0, 0]  # a fixed first batch says nothing of the others
    assert batch_axes([[], ["", 4], [2, "", 3]]) == [None, 0, 1]  # a 0-d first input has no batch to follow


def test_only_the_condition_of_a_where_selects_a_branch(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["flag"], ["cond"], to=TensorProto.BOOL),
         helper.make_node("Where", ["cond", "ids", "other"], ["y"])], "where",
        [helper.make_tensor_value_info("flag", TensorProto.INT64, [1, 8]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 8]),
         helper.make_tensor_value_info("other", TensorProto.INT64, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 8])])
    model = load_onnx(save_graph(graph, tmp_path / "where.onnx"))
    assert [s.selects_branch for s in model.inputs] == [True, False, False]


def test_a_branch_input_is_never_random():
    spec = InputSpec("sr", (), "int64", selects_branch=True)
    with pytest.raises(InputError, match=r"^input 'sr' \(0-d int64\) selects a branch of the model, so random "
                                         r"values could take a path it never takes in use: give its value with "
                                         r"--const sr=VALUE or an array in --dataset$"):
        generated_inputs((spec,), 1)
    mask = InputSpec("mask", (1, 8), "int64", selects_branch=True)
    with pytest.raises(InputError, match=r"a safe range with --input mask=\.\.\.:int64:LOW-HIGH"):
        generated_inputs((mask,), 1)


def test_an_input_range_makes_a_compared_integer_input_generated(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.INT32),
         helper.make_node("Less", ["f", "limit"], ["y"])], "compare",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.BOOL, [1, 8])],
        initializer=[numpy_helper.from_array(np.array(5, np.int32), "limit")])
    path = save_graph(graph, tmp_path / "compare.onnx")
    assert load_onnx(path).inputs[0].selects_branch  # read by Less through a Cast
    ranged = load_onnx(path, parse_inputs(["ids=1,8:int64:0-5"])).inputs[0]
    assert not ranged.selects_branch and generated_inputs((ranged,), 1)[0]["ids"].max() < 5


def test_specs_keep_batch_axis_value_and_branch_through_a_round_trip(stateful):
    model = with_constants(stateful, parse_constants(["sr=8000"]))
    assert tuple(InputSpec.from_dict(s.to_dict()) for s in model.inputs) == model.inputs
    assert InputSpec.from_dict({"name": "x", "shape": [1, 4]}).batch_axis == 0  # a record from before the field
    assert [how_generated(s) for s in model.inputs] == [
        "x [1, 4] float32: standard normal", "state [2, 1, 3] float32: standard normal", "sr = 8000"]


# --- datasets ------------------------------------------------------------------------------------------------------

def _stateful_npz(tmp_path: Path, count: int = 6, **arrays) -> Path:
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((count, 4)).astype(np.float32),
            "state": rng.standard_normal((2, count, 3)).astype(np.float32), "sr": np.array(16000, np.int64)}
    data.update(arrays)
    path = tmp_path / "vad.npz"
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return path


def test_dataset_gives_state_with_its_batch_on_axis_1_and_a_0d_constant(stateful, tmp_path):
    path = _stateful_npz(tmp_path)
    data = load_npz(path, stateful.inputs)
    with np.load(path) as raw:
        x, state = raw["x"], raw["state"]
    assert len(data.samples) == 6 and data.name == "vad.npz (6 samples)"
    third = data.samples[2]
    assert np.array_equal(third["x"], x[2:3]) and np.array_equal(third["state"], state[:, 2:3])
    assert third["sr"].shape == () and third["sr"].item() == 16000
    assert {k: v.item() for k, v in data.constants.items()} == {"sr": 16000}
    assert [f["state"].shape for f in data.samples] == [(2, 1, 3)] * 6


def test_dataset_samples_run_on_the_model_and_batch_along_each_inputs_axis(tmp_path):
    import onnxruntime as ort

    path = make_stateful_onnx(tmp_path / "dyn.onnx")
    model = load_onnx(path, parse_inputs(SHAPES))
    data = load_npz(_stateful_npz(tmp_path, count=5), model.inputs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    joined = batched(data.samples, 2, model.inputs)
    assert [f["state"].shape for f in joined] == [(2, 2, 3), (2, 2, 3), (2, 1, 3)]
    assert all(f["sr"].shape == () for f in joined)
    one_by_one = [session.run(None, f) for f in data.samples]
    in_twos = [session.run(None, f) for f in joined]
    assert np.array_equal(np.concatenate([o[0] for o in in_twos]), np.concatenate([o[0] for o in one_by_one]))
    assert np.array_equal(np.concatenate([o[1] for o in in_twos], axis=1),
                          np.concatenate([o[1] for o in one_by_one], axis=1))
    # sr = 16000 from the 0-d array reached the model: its branch gives y = x
    assert np.array_equal(in_twos[0][0], np.concatenate([data.samples[0]["x"], data.samples[1]["x"]]))


def test_batched_and_repeated_feeds_join_along_each_inputs_axis(stateful):
    feeds = generated_inputs(with_constants(stateful, parse_constants(["sr=16000"])).inputs, 3)
    joined = batched(feeds, 2, stateful.inputs)
    assert [(f["x"].shape, f["state"].shape, f["sr"].shape) for f in joined] == [
        ((2, 4), (2, 2, 3), ()), ((1, 4), (2, 1, 3), ())]
    assert np.array_equal(joined[0]["state"][:, 1], feeds[1]["state"][:, 0])
    timing = repeated(feeds[0], 4, stateful.inputs)
    assert (timing["x"].shape, timing["state"].shape, timing["sr"].shape) == ((4, 4), (2, 4, 3), ())


def test_dataset_fills_an_input_from_its_constant(stateful, tmp_path):
    model = with_constants(stateful, parse_constants(["sr=8000"]))
    data = load_npz(_stateful_npz(tmp_path, sr=None), model.inputs)
    assert [f["sr"].item() for f in data.samples] == [8000] * 6 and data.constants == {}
    state_const = load_npz(_stateful_npz(tmp_path, state=np.array(0.5, np.float32)), stateful.inputs)
    assert np.array_equal(state_const.samples[4]["state"], np.full((2, 1, 3), 0.5, np.float32))
    assert [f["state"].shape for f in state_const.samples.batched(4)] == [(2, 4, 3), (2, 2, 3)]


def test_dataset_refuses_an_input_given_twice_or_with_its_batch_in_the_wrong_place(stateful, tmp_path):
    model = with_constants(stateful, parse_constants(["sr=8000"]))
    with pytest.raises(DatasetError, match=r"input\(s\) sr have a constant value already \(--const, or the "
                                           r"--dataset's 0-d array\) and another array here; give each once$"):
        load_npz(_stateful_npz(tmp_path), model.inputs)
    same = with_constants(stateful, parse_constants(["sr=16000"]))  # calibration data repeating the dataset's rate
    assert [f["sr"].item() for f in load_npz(_stateful_npz(tmp_path), same.inputs).samples] == [16000] * 6
    with pytest.raises(DatasetError, match=r"array 'state' has shape \[6, 2, 3\], expected \[2, N, 3\] for input "
                                           r"shape \[2, 1, 3\]$"):
        load_npz(_stateful_npz(tmp_path, state=np.zeros((6, 2, 3), np.float32)), stateful.inputs)
    with pytest.raises(DatasetError, match=r"array 'sr' has shape \[6\], expected \[\] .*a 0-d array gives one"):
        load_npz(_stateful_npz(tmp_path, sr=np.full(6, 16000, np.int64)), stateful.inputs)


def test_samples_slice_as_a_list_does():
    samples = Samples({"x": np.arange(10.0)[:, None]}, {"x": 0}, {}, 3, 10)
    assert len(samples) == 4 and samples[-1]["x"].ravel().tolist() == [9.0]
    head = samples[:2]
    assert isinstance(head, Samples) and [f["x"].ravel().tolist() for f in head] == [[0, 1, 2], [3, 4, 5]]
    assert [f["x"].ravel().tolist() for f in samples[1::2]] == [[3, 4, 5], [9]]
    assert not samples[5:] and len(samples[2:99]) == 2
    with pytest.raises(IndexError):
        samples[4]


# --- the real Silero VAD: a 0-d int64 `sr` that selects a branch, a state with its batch on axis 1 ---------------

VAD_SHAPES = ["--input", "input=1,512", "--input", "state=2,1,128"]


def _vad_run(tmp_path: Path, name: str, *args: str) -> tuple[int, dict | None]:
    import json

    from mcbench.cli import main
    from tests.packaged_models import packaged_model

    model = packaged_model("silero-vad") / "silero_vad.onnx"
    out = tmp_path / name
    code = main(["run", "--quick", "--no-load", "--model", str(model), "--variants", "ort-fp32", *VAD_SHAPES,
                 "--out", str(out), *args])
    results = out / "results.json"
    return code, json.loads(results.read_text()) if results.exists() else None


@pytest.mark.slow
def test_silero_vad_without_const_says_what_to_give_before_any_work(tmp_path, capsys):
    code, results = _vad_run(tmp_path, "no-const")
    assert code == 2 and results is None and not (tmp_path / "no-const").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "mcbench: input 'sr' (0-d int64) selects a branch of the model, so random values could take a path it never "
        "takes in use: give its value with --const sr=VALUE or an array in --dataset")


@pytest.mark.slow
def test_silero_vad_const_reaches_the_model(tmp_path):
    code, results = _vad_run(tmp_path, "sr16k", "--const", "sr=16000")
    baseline = next(v for v in results["variants"] if v["name"] == "ort-fp32")
    assert code == 0 and baseline["status"] == "ok", baseline.get("error")
    sr = next(s for s in results["model"]["inputs"] if s["name"] == "sr")
    assert sr["value"] == 16000 and sr["shape"] == []
    state = next(s for s in results["model"]["inputs"] if s["name"] == "state")
    assert state["batch_axis"] == 1
    assert ("generated inputs: input [1, 512] float32: standard normal; state [2, 1, 128] float32: standard normal; "
            "sr = 16000") in results["warnings"]
    # the value is what the model sees: a rate Silero has no branch for fails in the model itself
    code, results = _vad_run(tmp_path, "sr99", "--const", "sr=99")
    baseline = next(v for v in results["variants"] if v["name"] == "ort-fp32")
    assert code == 1 and baseline["status"] == "failed"


@pytest.mark.slow
def test_silero_vad_dataset_with_state_batched_on_axis_1_and_a_0d_rate(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(512) / 16000
    tone = np.stack([np.sin(2 * np.pi * f * t) * a for f, a in zip(rng.uniform(100, 3000, 12),
                                                                     rng.uniform(0, 0.5, 12), strict=True)])
    np.savez(tmp_path / "vad.npz", input=tone.astype(np.float32), state=np.zeros((2, 12, 128), np.float32),
             sr=np.array(16000, np.int64))
    code, results = _vad_run(tmp_path, "dataset", "--dataset", str(tmp_path / "vad.npz"))
    baseline = next(v for v in results["variants"] if v["name"] == "ort-fp32")
    assert code == 0 and baseline["status"] == "ok", baseline.get("error")
    assert baseline["accuracy"]["samples"] == 12
    assert "constant inputs: sr = 16000" in results["warnings"]


def test_serve_takes_const_for_an_onnx_file_and_refuses_a_random_branch_input(tmp_path):
    from mcbench.local_server import server_spec

    path = str(make_stateful_onnx(tmp_path / "stateful.onnx"))
    spec = server_spec(path, None, "onnxruntime", 1, SHAPES, ["sr=16000"])
    assert [s.get("value") for s in spec["artifact"]["inputs"]] == [None, None, 16000]
    with pytest.raises(InputError, match=r"^input 'sr' \(0-d int64\) selects a branch of the model"):
        server_spec(path, None, "onnxruntime", 1, SHAPES)


def test_a_batch_axis_that_is_not_first_is_not_taken_for_a_fixed_batch(tmp_path):
    from mcbench.optimizer.targets import batch_skip_reason

    model = load_onnx(make_stateful_onnx(tmp_path / "stateful.onnx"), parse_inputs(SHAPES))
    assert batch_skip_reason(model, 4) is None  # state [2, ?, 3]: its 2 is not its batch; sr has none


def test_the_measurement_batches_a_dataset_along_each_inputs_axis(tmp_path):
    from mcbench.bench.latency import TimingPlan
    from mcbench.bench.measure import measure_in_process
    from mcbench.optimizer.targets import Target

    model = load_onnx(make_stateful_onnx(tmp_path / "stateful.onnx"), parse_inputs(SHAPES))
    path = _stateful_npz(tmp_path, count=4)  # whole batches of 2: an output batched on axis 1 joins on axis 0 today
    data = load_npz(path, model.inputs)
    model = with_constants(model, {"sr": InputConstant(16000)})  # the dataset's 0-d array, as the run applies it
    plan = TimingPlan(warmup_runs=1, min_runs=3, min_seconds=0.01, max_seconds=0.2)
    runs = [measure_in_process(model.to_dict(), Target("onnxruntime", threads=1).to_dict(), data.samples,
                               data.samples[0], plan, size) for size in (1, 2)]
    assert runs[0].outputs.shape == (4, 4) and np.array_equal(runs[0].outputs, runs[1].outputs)
    with np.load(path) as raw:
        assert np.array_equal(runs[0].outputs, raw["x"])  # sr = 16000 reached the model: y = x


def test_load_from_a_url_fills_consts_and_never_draws_a_0d_integer(tmp_path):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from mcbench.remote_load import model_inputs

    meta = {"name": "vad", "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 512]},
                                      {"name": "state", "datatype": "FP32", "shape": [2, -1, 128]},
                                      {"name": "sr", "datatype": "INT64", "shape": []}]}

    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            body = json.dumps(meta).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        feeds = model_inputs(url, "vad", {}, ["sr=8000"])
        assert feeds["sr"].shape == () and feeds["sr"].item() == 8000 and feeds["state"].shape == (2, 1, 128)
        with pytest.raises(InputError, match=r"^input 'sr' \(0-d int64\) selects a branch of the model"):
            model_inputs(url, "vad", {})
    finally:
        server.shutdown()
