"""quant.int8_static_smooth: static INT8 that keeps an attention block usable, on a transformer layer built here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.passes import PassContext, PassError, apply_step
from mcbench.optimizer.passes.quantize_transformer import input_channel_max, smooth, weighted_matmuls
from mcbench.optimizer.targets import Target, open_session
from tests.conftest import save_graph

SEQ, HIDDEN, FFN = 8, 16, 32
MATMULS = ("q", "k", "v", "scores", "context", "attn_out", "ffn1", "ffn2")


def make_encoder_layer(path: Path) -> Path:
    """One post-norm encoder layer as a BERT export writes it: the mask added to the attention scores as the
    float minimum, a layer norm whose output has one channel 20x the others, a ReLU FFN."""
    rng = np.random.default_rng(0)

    def weight(name: str, rows: int, cols: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32), name)

    gamma = np.ones(HIDDEN, np.float32)
    gamma[3] = 20.0  # the outlier channel a layer norm's output has in a trained encoder
    mask = np.zeros((1, 1, SEQ), np.float32)
    mask[..., -2:] = np.finfo(np.float32).min  # two padded positions
    inits = [weight("Wq", HIDDEN, HIDDEN), weight("Wk", HIDDEN, HIDDEN), weight("Wv", HIDDEN, HIDDEN),
             weight("Wo", HIDDEN, HIDDEN), weight("W1", HIDDEN, FFN), weight("W2", FFN, HIDDEN),
             numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(np.zeros(HIDDEN, np.float32), "beta"),
             numpy_helper.from_array(mask, "mask")]
    n = helper.make_node
    nodes = [
        n("LayerNormalization", ["x", "gamma", "beta"], ["ln"], name="ln", axis=-1),
        n("MatMul", ["ln", "Wq"], ["qo"], name="q"), n("MatMul", ["ln", "Wk"], ["ko"], name="k"),
        n("MatMul", ["ln", "Wv"], ["vo"], name="v"),
        n("Transpose", ["ko"], ["kt"], name="kt", perm=[0, 2, 1]),
        n("MatMul", ["qo", "kt"], ["so"], name="scores"),
        n("Add", ["so", "mask"], ["masked"], name="add_mask"),
        n("Softmax", ["masked"], ["probs"], name="softmax", axis=-1),
        n("MatMul", ["probs", "vo"], ["co"], name="context"),
        n("MatMul", ["co", "Wo"], ["ao"], name="attn_out"),
        n("Add", ["ao", "ln"], ["h"], name="residual1"),
        n("MatMul", ["h", "W1"], ["f1"], name="ffn1"),
        n("Relu", ["f1"], ["g"], name="act"),
        n("MatMul", ["g", "W2"], ["f2"], name="ffn2"),
        n("Add", ["f2", "h"], ["y"], name="residual2"),
    ]
    graph = helper.make_graph(nodes, "encoder_layer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SEQ, HIDDEN])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, HIDDEN])], inits)
    return save_graph(graph, path)


def _samples(count: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, SEQ, HIDDEN)).astype(np.float32)} for _ in range(count)]


@pytest.fixture
def layer(tmp_path: Path) -> Artifact:
    return Artifact(make_encoder_layer(tmp_path / "layer.onnx"), "onnx", (InputSpec("x", (1, SEQ, HIDDEN)),))


def _outputs(artifact: Artifact, samples) -> np.ndarray:
    session = open_session(artifact, Target("onnxruntime"))
    return np.stack([session.run(s)[0].ravel() for s in samples])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def test_quantizes_every_matmul_keeps_mask_softmax_norms_and_matmul_outputs_float(layer, tmp_path):
    ctx = PassContext(calibration=_samples(16, seed=1), calibration_source="16 generated")
    quantized = apply_step(layer, "quant.int8_static_smooth", ctx, tmp_path / "q")
    record = quantized.passes[-1]
    assert record["pass"] == "quant.int8_static_smooth" and record["alpha"] == 0.7
    assert record["matmuls"] == record["quantized_matmuls"] == len(MATMULS)
    assert record["smoothed_inputs"] == 4  # the norm's output (read by q, k, v), context, h, the ReLU's output
    assert record["matmul_outputs"] == "float, quantized only where another MatMul reads them"
    assert record["calibration_samples"] == 16
    assert {"Add", "Softmax", "LayerNormalization", "Relu", "Transpose"} <= set(record["float_ops"])
    graph = onnx.load(str(quantized.path)).graph
    dequantized = {o for node in graph.node if node.op_type == "DequantizeLinear" for o in node.output}
    for node in graph.node:
        if node.op_type == "MatMul":  # both inputs through Quantize/Dequantize, the output read as it is
            assert all(i in dequantized for i in node.input), node.name
        if node.op_type in ("Add", "Softmax", "LayerNormalization", "Relu"):
            assert not any(i in dequantized for i in node.input), node.name
    # A MatMul's output is quantized only where another MatMul reads it (q, k, v; k after its Transpose), not
    # where the residual Adds read it (those carry the large dimensions).
    quantized_tensors = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    assert {"qo", "vo"} <= quantized_tensors and {"ko", "kt"} & quantized_tensors
    assert not {"ao", "f2", "masked", "so"} & quantized_tensors
    # The smoothing Muls sit before the quantizers of the inputs they smooth, and are not quantized themselves.
    muls = [node for node in graph.node if node.op_type == "Mul" and node.name.endswith("_smooth")]
    assert sorted(m.input[0] for m in muls) == ["co", "g", "h", "ln"]
    held_out = _samples(8, seed=2)
    assert _cosine(_outputs(layer, held_out), _outputs(quantized, held_out)) > 0.99
    assert any("4 inputs smoothed" in m and "8 of 8 MatMul/Gemm" in m for m in ctx.messages)


def test_plain_static_int8_breaks_the_same_layer(layer, tmp_path):
    """Why the pass exists: quantizing the masked scores puts -3.4e38 and the real scores in one scale."""
    ctx = PassContext(calibration=_samples(16, seed=1))
    plain = apply_step(layer, "quant.int8_static", ctx, tmp_path / "plain")
    held_out = _samples(8, seed=2)
    assert _cosine(_outputs(layer, held_out), _outputs(plain, held_out)) < 0.9


def test_smoothing_alone_keeps_the_float_function(layer):
    model = onnx.load(str(layer.path))
    consumers = weighted_matmuls(model.graph)
    assert {t: [n.name for n in nodes] for t, nodes in consumers.items()} == {
        "ln": ["q", "k", "v"], "co": ["attn_out"], "h": ["ffn1"], "g": ["ffn2"]}  # scores, context: no weight
    samples = _samples(4, seed=3)
    peaks = input_channel_max(layer.path, list(consumers), samples)
    assert int(np.argmax(peaks["ln"])) == 3  # the outlier channel
    assert smooth(model, consumers, peaks, 0.7) == 4
    smoothed = Path(layer.path).with_name("smoothed.onnx")
    onnx.save(model, str(smoothed))
    ref, got = _outputs(layer, samples), _outputs(Artifact(smoothed, "onnx", layer.inputs), samples)
    assert np.max(np.abs(ref - got)) < 1e-4 * max(1.0, float(np.max(np.abs(ref))))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert "Wq" not in weights and weights["Wq_smooth_q"][3].std() > numpy_helper.to_array(
        onnx.load(str(layer.path)).graph.initializer[0])[3].std()  # the outlier moved into the weight's row


def test_smoothing_a_gemm_with_transposed_weights_keeps_the_float_function(tmp_path):
    rng = np.random.default_rng(4)
    weight = numpy_helper.from_array(rng.standard_normal((8, HIDDEN)).astype(np.float32), "w")  # (out, in)
    bias = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, HIDDEN])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], [weight, bias])
    path = save_graph(graph, tmp_path / "gemm.onnx")
    model = onnx.load(str(path))
    samples = [{"x": (rng.standard_normal((4, HIDDEN)) * np.linspace(1, 30, HIDDEN)).astype(np.float32)}
               for _ in range(3)]
    consumers = weighted_matmuls(model.graph)
    assert smooth(model, consumers, input_channel_max(path, ["x"], samples), 0.7) == 1
    onnx.save(model, str(tmp_path / "smoothed.onnx"))
    spec = (InputSpec("x", (4, HIDDEN)),)
    ref = _outputs(Artifact(path, "onnx", spec), samples)
    assert np.allclose(ref, _outputs(Artifact(tmp_path / "smoothed.onnx", "onnx", spec), samples), atol=1e-3)


def test_refuses_a_graph_without_weighted_matmuls_and_a_bad_alpha(tmp_path):
    weight = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])], [weight])
    conv = Artifact(save_graph(graph, tmp_path / "conv.onnx"), "onnx", (InputSpec("x", (1, 3, 8, 8)),))
    ctx = PassContext(calibration=[{"x": np.ones((1, 3, 8, 8), np.float32)}])
    with pytest.raises(PassError) as err:
        apply_step(conv, "quant.int8_static_smooth", ctx, tmp_path / "q")
    assert str(err.value) == ("quant.int8_static_smooth: no MatMul or Gemm with a constant 2-D weight in this graph: "
                              "nothing to quantize (quant.int8_static handles convolutions)")
    assert not list((tmp_path / "q").glob("*.onnx"))
    with pytest.raises(PassError, match="alpha must be within 0 and 1, got 1.5"):
        apply_step(conv, "quant.int8_static_smooth(alpha=1.5)", ctx, tmp_path / "q2")
