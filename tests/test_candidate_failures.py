"""A candidate's failure is that candidate's: a runtime that cannot read the graph fails one variant, with the
runtime's own reason, in a run that finishes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcbench.base.text import clip, first_line
from mcbench.bench.isolate import ChildError, error_text
from tests.conftest import save_graph

# What OpenVINO 2025's ONNX frontend raises on the graph below (and on Silero VAD): C++ source lines first.
OV_CONVERSION_FAILURE = """Exception from src/inference/src/cpp/core.cpp:84:
Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:
FrontEnd API failed with OpConversionFailure:
Model wasn't fully converted. Failed operations detailed log:
-- Conv-16 with a message:
While validating ONNX node '<Node(Conv): y0>': Check 'data.get_partial_shape().rank().is_static()' failed at \
src/frontends/onnx/frontend/src/op/conv.cpp:38:
FrontEnd API failed with GeneralFailure:
The input data tensor's rank has to be known (static)

-- ReduceMean-16 with a message:
Unsupported input type dynamic

Summary:
-- Conversion is failed for: Conv-16, ReduceMean-16
"""
OV_SAYS = ("FrontEnd API failed with OpConversionFailure: Model wasn't fully converted. Failed operations detailed "
           "log: Conversion is failed for: Conv-16, ReduceMean-16")


def test_the_line_quoted_is_what_failed_not_where_in_the_cpp_source():
    assert first_line(RuntimeError(OV_CONVERSION_FAILURE)) == OV_SAYS
    assert first_line("error: RuntimeError: " + OV_CONVERSION_FAILURE) == "error: RuntimeError: " + OV_SAYS
    infer = ("Exception from src/inference/src/cpp/infer_request.cpp:223:\nCheck 'x' failed at src/plugins/intel_cpu"
             "/src/infer_request.cpp:471:\nThe input tensor size is not equal to the model input type: got 1 bytes "
             "expected 4.\n")
    assert first_line(infer) == "The input tensor size is not equal to the model input type: got 1 bytes expected 4."
    assert first_line(ValueError("bad shape\nmore")) == "bad shape"
    assert first_line(KeyError()) == "KeyError" and first_line(None) == "" and first_line("") == ""
    assert first_line("x" * 200, 120) == "x" * 119 + "…"
    assert clip("x" * 120, 120) == "x" * 120 and clip("x" * 121, 120) == "x" * 119 + "…"
    assert first_line("error: OSError:\n--- last lines of its stderr ---\nboom") == "error: OSError:"


def test_a_child_that_raised_is_reported_without_its_exit_code():
    raised = ChildError(f"RuntimeError: {OV_CONVERSION_FAILURE}", "error", 0, "Traceback ...\nRuntimeError: ...")
    text = error_text(raised)
    assert "exit code" not in text and first_line(text) == "error: RuntimeError: " + OV_SAYS
    assert text.endswith("--- last lines of its stderr ---\nTraceback ...\nRuntimeError: ...")
    crashed = ChildError("the process died: signal SIGSEGV (exit status -11)", "crashed", -11)
    assert error_text(crashed) == "crashed: the process died: signal SIGSEGV (exit status -11)"
    killed = ChildError("timed out after 3 s; the child was killed", "timeout", -9)
    assert error_text(killed) == "timeout: timed out after 3 s; the child was killed (signal SIGKILL (exit status -9))"


def make_if_conv_onnx(path: Path) -> Path:
    """A Conv inside an If branch, on the output of an inner If whose branches differ in rank: onnxruntime runs it
    (y = conv(x)), OpenVINO cannot convert it ("The input data tensor's rank has to be known"), as on Silero VAD."""
    from onnx import TensorProto, helper, numpy_helper

    def branch(name: str, out: str, nodes: list) -> object:
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])

    inner = helper.make_node("If", ["c"], ["i"],
                             then_branch=branch("squeezed", "a", [helper.make_node("Squeeze", ["x", "one"], ["a"])]),
                             else_branch=branch("as_is", "b", [helper.make_node("Identity", ["x"], ["b"])]))
    then = branch("conv_of_inner", "t", [inner, helper.make_node("Unsqueeze", ["i", "one"], ["u"]),
                                         helper.make_node("Conv", ["u", "W"], ["t"], pads=[1, 1])])
    other = branch("conv", "e", [helper.make_node("Conv", ["x", "W"], ["e"], pads=[1, 1])])
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0), helper.make_node("Greater", ["m", "low"], ["c"]),
         helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
        "if_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 16])],
        initializer=[numpy_helper.from_array(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 1, 3), "W"),
                     numpy_helper.from_array(np.array(-1e9, np.float32), "low"),
                     numpy_helper.from_array(np.array([1], np.int64), "one")])
    return save_graph(graph, path)


def test_the_graph_runs_on_onnxruntime_and_openvino_cannot_read_it(tmp_path):
    import onnxruntime as ort
    import openvino as ov

    path = make_if_conv_onnx(tmp_path / "if_conv.onnx")
    y = ort.InferenceSession(str(path)).run(None, {"x": np.ones((1, 1, 16), np.float32)})[0]
    assert y.shape == (1, 2, 16)
    with pytest.raises(RuntimeError, match="OpConversionFailure") as caught:
        ov.Core().read_model(str(path))
    assert first_line(caught.value).startswith("FrontEnd API failed with OpConversionFailure: ")
    assert first_line(caught.value).endswith("Conversion is failed for: Conv-17")


@pytest.mark.slow
def test_a_graph_a_runtime_cannot_read_is_one_failed_candidate_in_a_finished_run(tmp_path):
    """NNCF's read_model (in the build, this process) and OpenVINO's session (in the measuring child) both fail:
    two failed variants with OpenVINO's reason, the baseline measured, the report written, exit code 1."""
    model = make_if_conv_onnx(tmp_path / "if_conv.onnx")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--quick", "--no-load",
                           "--no-cache", "--recipe", "int8=nncf.int8", "--recipe", "static=shape.static",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]  # docs/cli.md: the run finished, a variant failed
    assert "internal error" not in proc.stderr and (out / "report.html").is_file()
    variants = {v["name"]: v for v in json.loads((out / "results.json").read_text())["variants"]}
    assert list(variants) == ["ort-fp32", "ov-int8", "ort-static", "ov-static"]
    assert variants["ort-fp32"]["status"] == variants["ort-static"]["status"] == "ok"
    build, session = variants["ov-int8"], variants["ov-static"]
    assert build["status"] == session["status"] == "failed"
    assert first_line(build["error"]) == (
        "PassError: OpenVINO cannot read if_conv.onnx: RuntimeError: FrontEnd API failed with OpConversionFailure: "
        "Model wasn't fully converted. Failed operations detailed log: Conversion is failed for: Conv-17")
    assert first_line(session["error"]).startswith("error: RuntimeError: FrontEnd API failed with OpConversionFailure")
    assert "exit code" not in session["error"]
    assert build["search"]["stopped"] == "failed: " + first_line(build["error"])
    assert f"failed: {first_line(session['error'])}" in proc.stderr  # the progress lines
