"""fuse.conv_affine (per-channel ops after a Conv folded into it) and shape.static (input dims fixed), on tiny
hand-built graphs: the folded graph's operators and outputs, the INT8 graph it leads to, and the refusals."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mcbench.optimizer.artifact import Artifact, InputSpec, generated_inputs
from mcbench.optimizer.passes import PassContext, PassError, apply_step
from mcbench.optimizer.targets import Target, open_session
from tests.conftest import make_linear_onnx, save_graph

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
SPEC = (InputSpec("x", (1, 3, 8, 8)),)


def tf_style_cnn(path: Path, batch: int | str = "batch") -> Path:
    """Two Convs, each followed by a batch norm written as Sub(mean) -> Mul(scale) -> Add(shift) -> Relu (the way a
    TensorFlow export writes it), then a Mul by a per-position constant, which is not per channel: not folded."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "x"
    for i, (cin, cout) in enumerate(((3, 4), (4, 6))):
        def const(name, value, i=i):
            inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}{i}"))
            return f"{name}{i}"

        nodes.append(helper.make_node("Conv", [x, const("w", rng.standard_normal((cout, cin, 3, 3))),
                                               const("b", rng.standard_normal(cout))], [f"conv{i}"],
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Sub", [f"conv{i}", const("mean", rng.standard_normal((1, cout, 1, 1)))],
                                      [f"sub{i}"]))
        nodes.append(helper.make_node("Mul", [f"sub{i}", const("scale", rng.uniform(0.5, 2, (1, cout, 1, 1)))],
                                      [f"mul{i}"]))
        nodes.append(helper.make_node("Add", [const("shift", rng.standard_normal((cout, 1, 1))), f"mul{i}"],
                                      [f"add{i}"]))
        nodes.append(helper.make_node("Relu", [f"add{i}"], [f"relu{i}"]))
        x = f"relu{i}"
    inits.append(numpy_helper.from_array(rng.standard_normal((1, 1, 8, 8)).astype(np.float32), "positions"))
    nodes.append(helper.make_node("Mul", [x, "positions"], ["y"]))
    graph = helper.make_graph(nodes, "tf_style_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                     [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 6, 8, 8])],
                              initializer=inits)
    return save_graph(graph, path)


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _outputs(artifact: Artifact) -> list[np.ndarray]:
    session = open_session(artifact, Target("onnxruntime"))
    return [session.run(f)[0] for f in generated_inputs(artifact.inputs, 3, seed=5)]


def test_folds_sub_mul_add_after_each_conv_and_computes_the_same(tmp_path):
    source = Artifact(tf_style_cnn(tmp_path / "cnn.onnx"), "onnx", SPEC)
    ctx = PassContext()
    folded = apply_step(source, "fuse.conv_affine", ctx, tmp_path / "out")
    assert _ops(folded.path) == Counter({"Conv": 2, "Relu": 2, "Mul": 1})  # the per-position Mul stays
    record = folded.passes[-1]
    assert record["folded"] == {"Sub": 2, "Mul": 2, "Add": 2} and record["convs"] == 2
    assert record["nodes_before"] == 11 and record["nodes_after"] == 5
    assert record["max_abs_diff_vs_source"] < 1e-4
    for want, got in zip(_outputs(source), _outputs(folded), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert ctx.messages == ["fuse.conv_affine: Sub x2, Mul x2, Add x2 into 2 convolutions (11 -> 5 nodes)"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.conv_affine.onnx"]


def test_static_int8_of_the_folded_graph_has_no_quantize_pair_per_batch_norm_op(tmp_path):
    source = Artifact(tf_style_cnn(tmp_path / "cnn.onnx"), "onnx", SPEC)
    ctx = PassContext(calibration=generated_inputs(SPEC, 8, seed=1), calibration_source="generated")
    plain = apply_step(source, "quant.int8_static", ctx, tmp_path / "plain")
    folded = apply_step(apply_step(source, "fuse.conv_affine", ctx, tmp_path / "fold"), "quant.int8_static", ctx,
                        tmp_path / "int8")
    assert _ops(plain.path)["Sub"] == 2  # onnxruntime's own preparation leaves the Sub-led chains in place
    ops = _ops(folded.path)
    assert ops["Sub"] == 0 and ops["Add"] == 0 and ops["Conv"] == 2
    assert ops["QuantizeLinear"] < _ops(plain.path)["QuantizeLinear"]


def test_folds_a_batch_normalization_in_constant_nodes(tmp_path):
    """A Paddle export keeps its weights in Constant nodes; onnxruntime's basic optimisation folds those."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)

    def constant(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value.astype(np.float32)))

    nodes = [constant("w", rng.standard_normal((4, 3, 1, 1))), constant("g", rng.uniform(0.5, 2, 4)),
             constant("be", rng.standard_normal(4)), constant("m", rng.standard_normal(4)),
             constant("v", rng.uniform(0.5, 2, 4)),
             helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["y"], epsilon=1e-3)]
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])])
    source = Artifact(save_graph(graph, tmp_path / "bn.onnx"), "onnx", SPEC)
    folded = apply_step(source, "fuse.conv_affine", PassContext(), tmp_path / "out")
    assert _ops(folded.path) == Counter({"Conv": 1})
    for want, got in zip(_outputs(source), _outputs(folded), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_refuses_a_graph_with_no_convolution(tmp_path):
    linear = Artifact(make_linear_onnx(tmp_path / "l.onnx"), "onnx", (InputSpec("x", (1, 4)),))
    with pytest.raises(PassError, match="^cannot fuse.conv_affine: the graph has no Conv with constant weights$"):
        apply_step(linear, "fuse.conv_affine", PassContext(), tmp_path / "out")


def test_static_shape_fixes_the_batch_and_refuses_a_rank_it_cannot_feed(tmp_path):
    source = Artifact(tf_style_cnn(tmp_path / "cnn.onnx"), "onnx", SPEC)
    ctx = PassContext()
    fixed = apply_step(source, "shape.static", ctx, tmp_path / "out")
    dims = onnx.load(str(fixed.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 8, 8] and not any(d.dim_param for d in dims)
    assert fixed.passes[-1]["fixed"] == {"x": [1, 3, 8, 8]}
    assert ctx.messages == ["shape.static: x [1, 3, 8, 8]"]
    from mcbench.optimizer.targets import batch_skip_reason

    assert batch_skip_reason(fixed, 4) == "input(s) x have a fixed batch axis: batch size 4 cannot run"
    wrong = Artifact(source.path, "onnx", (InputSpec("x", (1, 3, 8)),))
    with pytest.raises(PassError, match=r"^cannot shape.static: input 'x' has rank 4 in the graph, the run's shape "
                                        r"\[1, 3, 8\] has rank 3$"):
        apply_step(wrong, "shape.static", PassContext(), tmp_path / "wrong")
    other = Artifact(source.path, "onnx", (InputSpec("x", (1, 3, 16, 16)),))
    fixed8 = apply_step(Artifact(tf_style_cnn(tmp_path / "b1.onnx", batch=1), "onnx", SPEC), "shape.static",
                        PassContext(), tmp_path / "b1")
    with pytest.raises(PassError, match=r"^cannot shape.static: input 'x' is \[1, 3, 8, 8\] in the graph, the run "
                                        r"feeds \[1, 3, 16, 16\]$"):
        apply_step(Artifact(fixed8.path, "onnx", other.inputs), "shape.static", PassContext(), tmp_path / "o")
