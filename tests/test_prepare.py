"""Graph preparation before quantization, on tiny graphs with the traits real exports have:
weights that come out of Constant nodes (a Paddle export), symbolic dims, an old opset, and a graph the
symbolic shape inference cannot handle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcbench.optimizer.artifact import Artifact, InputSpec, generated_inputs
from mcbench.optimizer.passes import PassContext, apply_passes
from mcbench.optimizer.passes import prepare as prepare_module
from mcbench.optimizer.targets import Target, open_session
from tests.conftest import save_graph


def make_paddle_like_onnx(path: Path, opset: int = 17) -> Path:
    """Conv + Relu + GlobalAveragePool + Flatten + MatMul, every weight a Constant node, dims symbolic:
    x [batch, 3, height, width] -> y [batch, 4]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def constant(name: str, array: np.ndarray):
        return helper.make_node("Constant", [], [name], name=f"{name}_const",
                                value=numpy_helper.from_array(array.astype(np.float32), name))

    nodes = [
        constant("conv.w", rng.standard_normal((8, 3, 3, 3)) * 0.3),
        constant("conv.b", rng.standard_normal(8) * 0.1),
        constant("fc.w", rng.standard_normal((8, 4)) * 0.5),
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc.w"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "paddle_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    return save_graph(graph, path, opset)


def _artifact(path: Path) -> Artifact:
    return Artifact(path, "onnx", (InputSpec("x", (1, 3, 16, 16)),))


def _outputs(artifact: Artifact, samples) -> np.ndarray:
    session = open_session(artifact, Target("onnxruntime"))
    return np.concatenate([session.run(s)[0] for s in samples])


def _close_to_fp32(fp32: Artifact, quantized: Artifact) -> float:
    samples = generated_inputs(fp32.inputs, 8, seed=5)
    a, b = _outputs(fp32, samples), _outputs(quantized, samples)
    return float(np.abs(a - b).max() / np.abs(a).max())


@pytest.mark.parametrize("recipe", ["quant.int8_dynamic", "quant.int8_dynamic(per_channel=true)",
                                    "quant.int8_static"])
def test_constant_node_weights_and_symbolic_dims_quantize(tmp_path, recipe):
    fp32 = _artifact(make_paddle_like_onnx(tmp_path / "m.onnx"))
    ctx = PassContext(generated_inputs(fp32.inputs, 16, seed=3), "generated")
    quantized = apply_passes(fp32, (recipe,), ctx, tmp_path / "q")
    record = quantized.passes[-1]
    assert record["prepare"] == "symbolic shape inference + basic optimisation"
    assert _close_to_fp32(fp32, quantized) < 0.1  # INT8 of a 2-layer net: within 10% of the output range
    import onnx

    graph = onnx.load(str(quantized.path)).graph
    assert not any(n.op_type == "Constant" and n.output[0] == "conv.w" for n in graph.node)  # folded
    kinds = {n.op_type for n in graph.node}
    assert kinds & {"ConvInteger", "DynamicQuantizeLinear", "QuantizeLinear", "MatMulInteger"}, kinds
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 16, 16]
    assert sorted(p.name for p in (tmp_path / "q").rglob("*.onnx")) == [quantized.path.name]  # no leftovers


def test_per_channel_static_int8_of_an_opset_12_graph_converts_it_to_13(tmp_path):
    fp32 = _artifact(make_paddle_like_onnx(tmp_path / "m.onnx", opset=12))
    ctx = PassContext(generated_inputs(fp32.inputs, 16, seed=3), "generated")
    quantized = apply_passes(fp32, ("quant.int8_static",), ctx, tmp_path / "q")
    assert quantized.passes[-1]["opset_from"] == 12 and quantized.passes[-1]["per_channel"] is True
    assert _close_to_fp32(fp32, quantized) < 0.1  # it loads: DequantizeLinear's axis needs opset 13


def test_the_ladder_records_why_a_rung_failed_and_uses_the_next(tmp_path, monkeypatch):
    def incomplete(model: Path, out: Path) -> None:
        raise Exception("Incomplete symbolic shape inference")

    monkeypatch.setattr(prepare_module, "_pre_process_symbolic", incomplete)
    fp32 = _artifact(make_paddle_like_onnx(tmp_path / "m.onnx"))
    quantized = apply_passes(fp32, ("quant.int8_dynamic",), PassContext(), tmp_path / "q")
    record = quantized.passes[-1]
    assert record["prepare"] == "basic optimisation + ONNX shape inference"
    assert record["prepare_failed"] == [
        "symbolic shape inference + basic optimisation: Exception: Incomplete symbolic shape inference"]
    assert _close_to_fp32(fp32, quantized) < 0.1


def test_a_graph_the_quantizer_refuses_fails_in_one_line_naming_the_preparation(tmp_path, monkeypatch):
    from mcbench.optimizer.passes import PassError

    for rung in ("_pre_process_symbolic", "_pre_process_plain", "_ort_basic"):
        monkeypatch.setattr(prepare_module, rung, lambda model, out: (_ for _ in ()).throw(RuntimeError("no")))
    fp32 = _artifact(make_paddle_like_onnx(tmp_path / "m.onnx"))
    with pytest.raises(PassError) as info:  # Constant-node weights without folding: the quantizer's own error
        apply_passes(fp32, ("quant.int8_dynamic",), PassContext(), tmp_path / "q")
    message = str(info.value)
    assert message.startswith("quant.int8_dynamic: onnxruntime's quantizer refused the graph (")
    assert message.endswith("prepared by none: the graph is quantized as it is)") and "\n" not in message


def test_incomplete_symbolic_inference_leaves_nothing_in_the_working_folder(tmp_path, monkeypatch):
    """onnxruntime saves the model it could not finish as sym_shape_infer_temp.onnx in the working directory,
    then raises; the user's folder must not collect it."""
    import onnxruntime.quantization.shape_inference as ort_shape_inference

    real = ort_shape_inference.quant_pre_process

    def incomplete(model, out, skip_symbolic_shape=False, **kwargs):
        if skip_symbolic_shape:  # the next rung: the real thing
            return real(model, out, skip_symbolic_shape=True, **kwargs)
        Path("sym_shape_infer_temp.onnx").write_bytes(b"half a model")
        raise Exception("Incomplete symbolic shape inference")

    monkeypatch.setattr(ort_shape_inference, "quant_pre_process", incomplete)
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.chdir(user)
    fp32 = _artifact(make_paddle_like_onnx(tmp_path / "m.onnx"))
    quantized = apply_passes(fp32, ("quant.int8_dynamic",), PassContext(), Path("q"))  # a relative out folder
    assert quantized.passes[-1]["prepare_failed"] == [
        "symbolic shape inference + basic optimisation: Exception: Incomplete symbolic shape inference"]
    assert sorted(p.name for p in user.iterdir()) == ["q"] and Path.cwd() == user
    assert not list(user.rglob("sym_shape_infer_temp.onnx"))
