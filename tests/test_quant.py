"""Quantization passes on tiny models: onnxruntime (static INT8 methods, FP16, accuracy-aware) and NNCF."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from mcbench.optimizer.artifact import Artifact, InputSpec, generated_inputs
from mcbench.optimizer.hardware import cpu_info
from mcbench.optimizer.intake import load_onnx
from mcbench.optimizer.passes import PassContext, PassError, apply_passes, check_needs, expand_recipe
from mcbench.optimizer.recipe_syntax import RecipeError, parse_recipe
from mcbench.optimizer.targets import Target, TargetError, open_session, skip_reason
from tests.conftest import make_linear_onnx, save_graph


def make_conv_onnx(path: Path) -> Path:
    """Conv(3->8, 3x3) + Relu + Flatten + MatMul(8*6*6 -> 5): a tiny CNN with fixed weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "Wc"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "Bc"),
        numpy_helper.from_array(rng.standard_normal((8 * 6 * 6, 5)).astype(np.float32) * 0.05, "Wl"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "Wc", "Bc"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "Wl"], ["y"], name="head"),
    ]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], initializer=inits)
    return save_graph(graph, path)


@pytest.fixture
def conv_onnx(tmp_path: Path) -> Artifact:
    return Artifact(make_conv_onnx(tmp_path / "conv.onnx"), "onnx", (InputSpec("x", (1, 3, 8, 8)),))


def _ctx(artifact: Artifact, n: int = 32) -> PassContext:
    return PassContext(generated_inputs(artifact.inputs, n, seed=3), "generated")


def _graph(path: Path):
    import onnx

    return onnx.load(str(path)).graph


def _outputs(artifact: Artifact, runtime: str, samples) -> np.ndarray:
    session = open_session(artifact, Target(runtime))
    return np.concatenate([session.run(s)[0] for s in samples])


@pytest.mark.parametrize(("method", "name"), [("minmax", "MinMax"), ("entropy", "Entropy"),
                                              ("percentile", "Percentile")])
def test_static_int8_calibration_methods_write_qdq_models(conv_onnx, tmp_path, method, name):
    ctx = _ctx(conv_onnx)
    quantized = apply_passes(conv_onnx, (f"quant.int8_static(method={method})",), ctx, tmp_path / method)
    ops = [n.op_type for n in _graph(quantized.path).node]
    assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= 4
    assert "Conv" in ops and "MatMul" in ops  # QDQ: the float ops stay, wrapped in Q/DQ pairs
    assert quantized.passes[-1]["calibration"] == name and quantized.passes[-1]["per_channel"] is True
    ref, got = _outputs(conv_onnx, "onnxruntime", ctx.calibration[:4]), _outputs(quantized, "onnxruntime",
                                                                                ctx.calibration[:4])
    assert np.max(np.abs(ref - got)) < 0.1 * max(1.0, float(np.max(np.abs(ref))))


def test_per_channel_gives_one_weight_scale_per_output_channel(conv_onnx, tmp_path):
    def conv_weight_scale(per_channel: bool) -> tuple[int, ...]:
        out = apply_passes(conv_onnx, (f"quant.int8_static(per_channel={str(per_channel).lower()})",),
                           _ctx(conv_onnx), tmp_path / str(per_channel))
        graph = _graph(out.path)
        inits = {i.name: i for i in graph.initializer}
        dq = next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("Wc"))
        return tuple(inits[dq.input[1]].dims)

    assert conv_weight_scale(True) == (8,)
    assert conv_weight_scale(False) == ()


def test_unknown_calibration_method_is_refused_before_any_work():
    with pytest.raises(RecipeError, match=r"^quant.int8_static\(method=kl\): method must be one of "
                                          r"minmax, entropy, percentile, got 'kl'$"):
        expand_recipe(parse_recipe("quant.int8_static(method=kl)"), "torch")


def test_passes_that_need_data_the_run_lacks_are_refused_before_any_work():
    with pytest.raises(RecipeError, match=r"^quant.int8_static needs calibration data \(representative inputs\), "
                                          "and this run has none$"):
        check_needs(parse_recipe("export.onnx + quant.int8_static"), set())
    with pytest.raises(RecipeError, match=r"quant.int8_accuracy_aware\(max_drop=0.02\) needs validation data"):
        check_needs(parse_recipe("quant.int8_accuracy_aware(max_drop=0.02)"), {"calibration"})
    check_needs(parse_recipe("quant.int8_dynamic + quant.fp16 + nncf.weight_compression"), set())


def test_pipeline_refuses_accuracy_aware_without_a_dataset():
    from mcbench.config import ConfigError, RunConfig
    from mcbench.optimizer.recipes import VariantSpec
    from mcbench.plan import check_data_needs, workload_data

    specs = [VariantSpec("aa", ("export.onnx", "quant.int8_accuracy_aware"), Target("onnxruntime"))]
    assert workload_data(RunConfig()) == {"calibration", "validation"}  # the demo has held-out labels
    check_data_needs(specs, workload_data(RunConfig()))
    with pytest.raises(ConfigError, match="^variant aa: quant.int8_accuracy_aware needs validation data"):
        check_data_needs(specs, workload_data(RunConfig(model="m.onnx")))


def test_fp16_converts_weights_and_keeps_fp32_inputs_and_outputs(conv_onnx, tmp_path):
    import onnx

    from mcbench.optimizer.artifact import input_shapes
    from mcbench.optimizer.graph_stats import count_flops

    half = apply_passes(conv_onnx, ("quant.fp16",), PassContext(), tmp_path / "fp16")
    graph = _graph(half.path)
    assert {i.data_type for i in graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    record = half.passes[-1]
    assert record["fp16_initializers"] == 3 and record["fp32_initializers"] == 0 and record["casts"] == 2
    samples = generated_inputs(conv_onnx.inputs, 4, seed=5)
    ref, got = _outputs(conv_onnx, "onnxruntime", samples), _outputs(half, "onnxruntime", samples)
    assert np.max(np.abs(ref - got)) < 1e-2
    assert half.path.stat().st_size < 0.6 * conv_onnx.path.stat().st_size
    flops = count_flops(onnx.load(str(conv_onnx.path)), input_shapes(conv_onnx.inputs))
    assert flops > 0 and count_flops(onnx.load(str(half.path)), input_shapes(half.inputs)) == flops


def test_flops_count_a_graph_whose_nodes_are_out_of_order(conv_onnx):
    """FP16 conversion of the digits CNN appends its input Cast after the nodes that read it: still counted."""
    import onnx

    from mcbench.optimizer.artifact import input_shapes
    from mcbench.optimizer.graph_stats import count_flops

    model = onnx.load(str(conv_onnx.path))
    flops = count_flops(model, input_shapes(conv_onnx.inputs))
    first = onnx.NodeProto()
    first.CopyFrom(model.graph.node[0])
    del model.graph.node[0]
    model.graph.node.append(first)
    assert flops > 0 and count_flops(model, input_shapes(conv_onnx.inputs)) == flops


@pytest.mark.openvino
def test_nncf_int8_writes_an_openvino_ir_that_openvino_runs_and_onnxruntime_refuses(conv_onnx, tmp_path):
    ctx = _ctx(conv_onnx)
    steps = expand_recipe(parse_recipe("nncf.int8(subset_size=16)"), "onnx")
    ir = apply_passes(conv_onnx, steps, ctx, tmp_path / "ov")
    assert ir.format == "openvino" and ir.path.suffix == ".xml" and ir.path.with_suffix(".bin").is_file()
    record = ir.passes[-1]
    assert record["fake_quantize"] >= 2 and record["layers_in_float"] == [] and record["calibration_samples"] == 16
    manifest = ir.manifest()
    assert manifest["size_bytes"] == ir.path.stat().st_size + ir.path.with_suffix(".bin").stat().st_size
    ref, got = _outputs(conv_onnx, "onnxruntime", ctx.calibration[:4]), _outputs(ir, "openvino", ctx.calibration[:4])
    assert np.max(np.abs(ref - got)) < 0.1 * max(1.0, float(np.max(np.abs(ref))))
    with pytest.raises(TargetError, match="^onnxruntime cannot run an OpenVINO IR model"):
        open_session(ir, Target("onnxruntime"))


@pytest.mark.openvino
def test_an_nncf_pass_after_an_openvino_pass_is_refused_before_work():
    with pytest.raises(RecipeError, match="nncf.int8 works on a ONNX model, and at that point of the recipe the "
                                          "model is OpenVINO IR"):
        expand_recipe(parse_recipe("nncf.weight_compression + nncf.int8"), "onnx")
    with pytest.raises(RecipeError, match="quant.fp16 works on a ONNX model"):
        expand_recipe(parse_recipe("nncf.int8 + quant.fp16"), "torch")


@pytest.mark.openvino
@pytest.mark.parametrize(("mode", "stored"), [("int8", {"u8": 2}), ("int8_sym", {"i8": 2})])
def test_weight_compression_changes_weight_dtypes_and_says_convolutions_stay_float(conv_onnx, tmp_path, mode,
                                                                                    stored):
    ir = apply_passes(conv_onnx, (f"nncf.weight_compression(mode={mode})",), PassContext(), tmp_path / mode)
    record = ir.passes[-1]
    assert record["weight_dtypes_before"] == {"f32": 2}
    assert record["weight_dtypes_after"] == stored and record["compressed_weights"] == 2
    assert record["note"].startswith("1 of 2 weight layers are convolutions")
    open_session(ir, Target("openvino")).run({"x": np.zeros((1, 3, 8, 8), np.float32)})


def make_mlp_onnx(path: Path, width: int = 256, layers: int = 4) -> Path:
    """A stack of width x width MatMuls: a linear-dominated model for INT4 weight compression."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32) * 0.05, f"W{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"W{i}"], [f"h{i}"], name=f"fc{i}"))
        x = f"h{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, width])], initializer=inits)
    return save_graph(graph, path)


@pytest.mark.openvino
def test_int4_weight_compression_of_a_linear_model_stores_int4_weights(tmp_path):
    mlp = load_onnx(make_mlp_onnx(tmp_path / "mlp.onnx"), {})
    ir = apply_passes(mlp, ("nncf.weight_compression(mode=int4)",), PassContext(), tmp_path / "int4")
    after = ir.passes[-1]["weight_dtypes_after"]
    assert after.get("i4", 0) >= 2 and "f32" not in after and "note" not in ir.passes[-1]
    assert ir.path.with_suffix(".bin").stat().st_size < 0.5 * mlp.path.stat().st_size


@pytest.mark.openvino
def test_openvino_precision_hints_are_honoured_or_refused():
    isa = cpu_info()["isa"]
    assert skip_reason(Target("openvino", options={"precision": "f32"})) is None
    reason = skip_reason(Target("openvino", options={"precision": "bf16"}))
    if any(f in isa for f in ("avx512_bf16", "amx_bf16")):
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith("OpenVINO inference precision bf16 needs avx512_bf16 or amx_bf16")


@pytest.mark.openvino
def test_openvino_refuses_a_precision_it_would_silently_replace(tmp_path):
    isa = cpu_info()["isa"]
    if any(f in isa for f in ("avx512_bf16", "amx_bf16")):
        pytest.skip("this CPU runs bf16")
    artifact = load_onnx(make_linear_onnx(tmp_path / "l.onnx"), {})
    with pytest.raises(TargetError, match="^asked OpenVINO for inference precision bf16, it runs f32: not measured$"):
        open_session(artifact, Target("openvino", options={"precision": "bf16"}))
    assert open_session(artifact, Target("openvino", options={"precision": "f32"})).precision == "f32"


def test_accuracy_aware_without_calibration_is_refused_by_the_pass(conv_onnx, tmp_path):
    with pytest.raises(PassError, match="quant.int8_accuracy_aware needs calibration data"):
        apply_passes(conv_onnx, ("quant.int8_accuracy_aware",), PassContext(), tmp_path)


# --- accuracy-aware quantization on the digits model -------------------------------------------------


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits CNN trained for a few epochs, exported to ONNX, with its training and held-out splits."""
    from mcbench.demo import DEMO_FACTORY, INPUT_NAME, INPUT_SHAPE, train_demo

    work = tmp_path_factory.mktemp("digits")
    trained = train_demo(work, epochs=10)
    torch_model = Artifact(trained.weights, "torch", (InputSpec(INPUT_NAME, INPUT_SHAPE),), factory=DEMO_FACTORY)
    onnx_model = apply_passes(torch_model, ("export.onnx",), PassContext(), work / "onnx")
    data = trained.data
    calibration = [{INPUT_NAME: x[None]} for x in data.x_train[:64]]
    validation = ([{INPUT_NAME: x[None]} for x in data.x_test], data.y_test)
    return onnx_model, calibration, validation


@pytest.mark.slow
def test_accuracy_aware_int8_meets_the_budget_on_digits(digits, tmp_path):
    model, calibration, validation = digits
    ctx = PassContext(calibration, "64 digits", validation=validation)
    out = apply_passes(model, ("quant.int8_accuracy_aware(max_drop=0.01)",), ctx, tmp_path)
    record = out.passes[-1]
    assert record["met_budget"] is True and record["fp32_accuracy"] - record["accuracy"] <= 0.01
    assert record["quantizable_layers"] == 4 and record["validation_samples"] == len(validation[1])
    assert record["layers_in_float"] == [] and record["sensitivity"] == {}  # well calibrated: all four in INT8
    assert [n.op_type for n in _graph(out.path).node].count("QuantizeLinear") >= 4


@pytest.mark.slow
def test_accuracy_aware_int8_keeps_the_most_sensitive_layers_in_float(digits, tmp_path):
    """Calibration on dimmed images clips activations: full INT8 loses accuracy, the search wins it back."""
    model, calibration, validation = digits
    dim = [{k: v * 0.3 for k, v in feed.items()} for feed in calibration[:16]]
    ctx = PassContext(dim, "16 dimmed digits", validation=validation)
    out = apply_passes(model, ("quant.int8_accuracy_aware(max_drop=0.01)",), ctx, tmp_path)
    record = out.passes[-1]
    first = record["attempts"][0]
    assert record["fp32_accuracy"] - first["accuracy"] > 0.01 and first["in_float"] == []
    assert set(record["sensitivity"]) == {"node_conv2d", "node_conv2d_1", "node_linear", "node_linear_1"}
    most_sensitive = max(record["sensitivity"], key=record["sensitivity"].get)
    assert record["layers_in_float"][0] == most_sensitive
    assert 1 <= len(record["layers_in_float"]) < 4
    assert record["met_budget"] is True and record["drop"] <= 0.01
    excluded = [n for n in _graph(out.path).node if n.name in record["layers_in_float"]]
    assert excluded and all(n.input[1] in {i.name for i in _graph(out.path).initializer} for n in excluded)


@pytest.mark.slow
@pytest.mark.openvino
def test_nncf_accuracy_control_meets_the_budget_on_digits(digits, tmp_path):
    model, calibration, validation = digits
    ctx = PassContext(calibration, "64 digits", validation=validation)
    out = apply_passes(model, ("nncf.int8_accuracy_aware(max_drop=0.01)",), ctx, tmp_path)
    record = out.passes[-1]
    assert out.format == "openvino" and record["met_budget"] is True
    assert isinstance(record["layers_in_float"], list)



def _pass_with_choices(artifact, ctx, out_dir, mode: Literal["a", "b"] = "a", other: str = "x"):
    return artifact


def _pass_with_an_unresolvable_annotation(artifact, ctx, out_dir, other: NotDefinedAnywhere = "x"):  # noqa: F821
    return artifact


def test_choices_come_from_literal_annotations_and_unresolvable_ones_are_refused_at_registration():
    from mcbench.optimizer.passes import check_choices, make_record
    from mcbench.optimizer.recipe_syntax import Step

    record = make_record("p.q", _pass_with_choices, ("onnx",), None, (), ("onnx",))
    kwargs = {"mode": "b", "other": "y"}
    assert check_choices(Step("p"), record, kwargs) == kwargs
    with pytest.raises(RecipeError, match="^p: mode must be one of a, b, got 'c'$"):
        check_choices(Step("p"), record, {"mode": "c"})
    with pytest.raises(TypeError, match="^pass p.q: _pass_with_an_unresolvable_annotation's annotations do not "
                                        "resolve .NameError"):
        make_record("p.q", _pass_with_an_unresolvable_annotation, ("onnx",), None, (), ("onnx",))


@pytest.mark.openvino
def test_nncf_int8_quantizes_an_attention_model_with_the_transformer_scheme(tmp_path):
    """An attention graph gets NNCF's transformer scheme: on the full BERT-like reference the default scheme
    fails with a KeyError on the embedding node (benchmarks/passes.py); this tiny one checks the choice."""
    import torch

    from tests.test_prune import BERT_SPECS, tiny_bert

    weights = tmp_path / "bert.pt"
    torch.save(tiny_bert().state_dict(), weights)
    base = Artifact(weights, "torch", BERT_SPECS, factory="tests.test_prune:tiny_bert")
    ctx = _ctx(base, 8)
    onnx_model = apply_passes(base, ("export.onnx",), ctx, tmp_path / "onnx")
    ir = apply_passes(onnx_model, ("nncf.int8(subset_size=8)",), ctx, tmp_path / "q")
    record = ir.passes[-1]
    assert record["model_type"] == "transformer" and record["fake_quantize"] > 0
    ref, got = _outputs(onnx_model, "onnxruntime", ctx.calibration[:4]), _outputs(ir, "openvino", ctx.calibration[:4])
    assert got.shape == (4, 2) and np.max(np.abs(ref - got)) < 0.1 * max(1.0, float(np.max(np.abs(ref))))
    cnn = apply_passes(onnx_model, ("nncf.int8(subset_size=8, model_type=cnn)",), ctx, tmp_path / "cnn")
    assert cnn.passes[-1]["model_type"] == "cnn"  # asked for, not overridden
