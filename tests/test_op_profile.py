"""Operator profiles: onnxruntime's profiler and OpenVINO's performance counters, summarised and explained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.op_profile import explain, profile_ops, summarise, with_comparison
from mcbench.optimizer.artifact import Artifact, InputSpec, generated_inputs
from mcbench.optimizer.passes import PassContext, apply_passes
from mcbench.optimizer.targets import Target
from tests.test_quant import make_conv_onnx


@pytest.fixture
def conv(tmp_path: Path) -> Artifact:
    return Artifact(make_conv_onnx(tmp_path / "conv.onnx"), "onnx", (InputSpec("x", (1, 3, 8, 8)),))


def _feeds(artifact: Artifact) -> dict[str, np.ndarray]:
    return generated_inputs(artifact.inputs, 1, seed=7)[0]


def _quantized(artifact: Artifact, step: str, out: Path) -> Artifact:
    return apply_passes(artifact, (step,), PassContext(generated_inputs(artifact.inputs, 16, seed=3), "gen"), out)


def _check_shape_of(profile: dict) -> None:
    assert "error" not in profile, profile.get("error")
    assert profile["runs"] == 10 and profile["total_ms"] > 0
    assert abs(sum(profile["share_by_kind"].values()) - 1) < 1e-3
    assert all(0 <= e["share"] <= 1 and e["count"] >= 1 for e in profile["by_op_type"])
    assert isinstance(profile["sentence"], str) and profile["sentence"]


def test_onnxruntime_fp32_profile_is_float_conv_time(conv):
    profile = profile_ops(conv, Target("onnxruntime", threads=1), _feeds(conv))
    _check_shape_of(profile)
    assert profile["runtime"] == "onnxruntime" and profile["integer_share"] == 0
    kinds = {e["op_type"]: e["kind"] for e in profile["by_op_type"]}
    assert kinds.get("Conv") == "float" or kinds.get("FusedConv") == "float"
    assert profile["by_op_type"][0]["kernels"] == ["CPUExecutionProvider"]
    assert len(profile["float_compute_layers"]) == 2
    assert profile["sentence"].startswith("float kernels; ")


def test_static_int8_profile_shows_integer_kernels(conv, tmp_path):
    int8 = _quantized(conv, "quant.int8_static", tmp_path / "s")
    profile = profile_ops(int8, Target("onnxruntime", threads=1), _feeds(conv))
    _check_shape_of(profile)
    assert "QLinearConv" in profile["integer_ops"] and profile["integer_share"] > 0
    assert profile["float_compute_layers"] == []
    assert "% of the time in INT8 " in profile["sentence"]


def test_dynamic_int8_cnn_profile_names_conv_integer(conv, tmp_path):
    int8 = _quantized(conv, "quant.int8_dynamic", tmp_path / "d")
    profile = profile_ops(int8, Target("onnxruntime", threads=1), _feeds(conv))
    _check_shape_of(profile)
    assert "ConvInteger" in profile["integer_ops"] and profile["convert_share"] > 0  # DynamicQuantizeLinear
    assert "dynamic INT8 ConvInteger kernels are slow on this " in profile["sentence"]


@pytest.mark.openvino
def test_openvino_profiles_read_the_executed_kernel_precision(conv, tmp_path):
    fp32 = profile_ops(conv, Target("openvino", threads=1), _feeds(conv))
    _check_shape_of(fp32)
    assert fp32["runtime"] == "openvino" and fp32["integer_share"] == 0
    conv_row = next(e for e in fp32["by_op_type"] if e["op_type"] == "Convolution")
    assert conv_row["kind"] == "float" and all(k.lower().endswith("f32") for k in conv_row["kernels"])

    ir = _quantized(conv, "nncf.int8(subset_size=16)", tmp_path / "ov")
    int8 = profile_ops(ir, Target("openvino", threads=1), _feeds(conv))
    _check_shape_of(int8)
    conv_row = next(e for e in int8["by_op_type"] if e["op_type"] == "Convolution")
    assert conv_row["kind"] == "integer" and all(k.upper().endswith("I8") for k in conv_row["kernels"])
    assert int8["integer_share"] > 0.3 and "Convolution" in int8["integer_ops"]


def test_a_profiler_failure_is_recorded_not_raised(tmp_path):
    missing = Artifact(tmp_path / "gone.onnx", "onnx", (InputSpec("x", (1, 4)),))
    profile = profile_ops(missing, Target("onnxruntime"), {"x": np.zeros((1, 4), np.float32)})
    assert profile["runtime"] == "onnxruntime" and profile["error"].startswith("NoSuchFile")
    torch_profile = profile_ops(missing, Target("torch"), {})
    assert torch_profile["error"] == "operator profiling covers onnxruntime and OpenVINO only"


def _summary(kinds: dict[str, float], isa: list[str], ops: list[str] | None = None) -> dict:
    records = [{"name": f"n{i}", "op_type": (ops or ["Conv"] * len(kinds))[i], "kind": kind, "kernel": "k",
                "us": share * 100} for i, (kind, share) in enumerate(kinds.items())]
    return {**summarise(records, 1), "isa": isa}


def test_sentences_say_why_a_variant_is_not_faster():
    dyn = _summary({"integer": 0.7, "convert": 0.3}, ["avx2", "fma"], ["ConvInteger", "DynamicQuantizeLinear"])
    assert explain(dyn, [{"pass": "quant.int8_dynamic"}], 2.5, "ort-fp32") == (
        "2.50x slower than ort-fp32: 70% of the time in INT8 ConvInteger kernels, 30% in (de)quantize ops; "
        "dynamic INT8 ConvInteger kernels are slow on this AVX2 CPU without VNNI (no fused INT8 convolution)")
    static = _summary({"integer": 0.8, "convert": 0.2}, ["avx2", "fma"], ["QLinearConv", "QuantizeLinear"])
    assert explain(static, [{"pass": "quant.int8_static"}], 1.2, "ort-fp32").endswith(
        "on this AVX2 CPU without VNNI INT8 dot products take several instructions, so INT8 gains little over FP32")
    assert explain(static, [{"pass": "quant.int8_static"}], 0.5, "ort-fp32").startswith("2.00x faster than ort-fp32")
    stayed = _summary({"float": 0.9, "convert": 0.1}, ["avx2"], ["Conv", "DequantizeLinear"])
    assert explain(stayed, [{"pass": "quant.int8_static"}]) == (
        "quantized, but no operator ran in an integer kernel: 1 compute layer(s) stayed in float "
        "and (de)quantize ops add 10% of the time")
    pruned = _summary({"float": 1.0}, ["avx2"])
    assert explain(pruned, [{"pass": "prune.unstructured", "sparsity": 0.5}], 1.0, "ort-fp32") == (
        "as fast as ort-fp32 (within 5%): sparsity 50% but the runtime uses dense kernels: "
        "the zeroed weights are multiplied like any others")
    vnni = _summary({"integer": 1.0}, ["avx2", "avx512f", "avx512_vnni"], ["QLinearConv"])
    assert "without VNNI" not in explain(vnni, [{"pass": "quant.int8_static"}], 0.5, "ort-fp32")


def test_with_comparison_rewrites_the_sentence_against_the_reference():
    profile = _summary({"integer": 1.0}, ["avx2"], ["ConvInteger"])
    out = with_comparison(profile, [{"pass": "quant.int8_dynamic"}], 4.0, "ort-fp32", 1.0)
    assert out["vs_fp32"] == {"reference": "ort-fp32", "p50_ratio": 4.0}
    assert out["sentence"].startswith("4.00x slower than ort-fp32: 100% of the time in INT8 ConvInteger kernels")
    assert with_comparison({"error": "x"}, [], 1.0, "ort-fp32", 1.0) == {"error": "x"}


def test_pipeline_compares_each_profile_with_the_fp32_variant_of_its_runtime():
    from mcbench.pipeline import compare_op_profiles
    from mcbench.reports.schema import LatencyStats, VariantResult

    def variant(name, runtime, recipe, p50, passes=()):
        v = VariantResult(name, runtime, list(recipe), status="ok")
        v.latency = LatencyStats.from_seconds([p50 / 1000] * 3)
        v.artifact = {"passes": list(passes)}
        v.op_profile = _summary({"integer": 1.0} if passes else {"float": 1.0}, ["avx2"],
                                ["QLinearConv"] if passes else ["Conv"])
        return v

    runs = [variant("ort-fp32", "onnxruntime", ["export.onnx"], 2.0),
            variant("ov-fp32", "openvino", ["export.onnx"], 1.0),
            variant("ort-int8", "onnxruntime", ["export.onnx", "quant.int8_static"], 3.0,
                    [{"pass": "quant.int8_static"}]),
            variant("ov-int8", "openvino", ["export.onnx", "nncf.int8"], 0.5, [{"pass": "nncf.int8"}])]
    compare_op_profiles(runs)
    assert runs[2].op_profile["vs_fp32"] == {"reference": "ort-fp32", "p50_ratio": 1.5}
    assert runs[2].op_profile["sentence"].startswith("1.50x slower than ort-fp32: ")
    assert runs[3].op_profile["vs_fp32"] == {"reference": "ov-fp32", "p50_ratio": 0.5}
    assert "vs_fp32" not in runs[0].op_profile


@pytest.mark.parametrize("runtime", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.openvino)])
def test_the_measurement_returns_the_operator_profile(conv, runtime):
    from mcbench.bench.latency import TimingPlan
    from mcbench.bench.measure import measure_in_process

    feeds = _feeds(conv)
    plan = TimingPlan(warmup_runs=2, min_runs=10, min_seconds=0.05, max_seconds=1)
    result = measure_in_process(conv.to_dict(), Target(runtime, threads=1).to_dict(), [feeds], feeds, plan)
    assert result.outputs.shape == (1, 5) and result.latency.count >= 10
    _check_shape_of(result.op_profile)
    assert result.op_profile["runtime"] == runtime


@pytest.mark.slow
@pytest.mark.openvino
def test_a_demo_run_keeps_op_profiles_and_pass_records_for_quantized_variants(tmp_path, monkeypatch):
    from mcbench.bench.latency import TimingPlan
    from mcbench.config import RunConfig
    from mcbench.optimizer.recipes import VariantSpec
    from mcbench.pipeline import Pipeline

    ov = Target("openvino", options={"hint": "LATENCY", "precision": "f32"})
    specs = [VariantSpec("torch-fp32", (), Target("torch"), baseline=True),
             VariantSpec("ort-fp32", ("export.onnx",), Target("onnxruntime")),
             VariantSpec("ort-int8-dynamic", ("export.onnx", "quant.int8_dynamic"), Target("onnxruntime")),
             VariantSpec("ort-int8-aa", ("export.onnx", "quant.int8_accuracy_aware(max_drop=0.02)"),
                         Target("onnxruntime")),
             VariantSpec("ov-fp32", ("export.onnx",), ov),
             VariantSpec("ov-nncf-int8", ("export.onnx", "nncf.int8"), ov)]
    import mcbench.pipeline as pipeline_mod
    from mcbench.plan import Plan

    monkeypatch.setattr(pipeline_mod, "plan_before_loading", lambda config: Plan(specs))
    monkeypatch.setattr(pipeline_mod, "plan_for_model", lambda config, plan, *_: plan)  # not the kind's space
    timing = TimingPlan(warmup_runs=2, min_runs=20, min_seconds=0.1, max_seconds=1)
    run, _ = Pipeline(RunConfig(quick=True, load=None, out_dir=tmp_path / "run", timing=timing),
                      progress=lambda _: None).run()
    by_name = {v.name: v for v in run.variants}
    assert all(v.status == "ok" for v in run.variants), [(v.name, v.error) for v in run.variants]
    assert by_name["torch-fp32"].op_profile is None
    assert by_name["ort-int8-dynamic"].op_profile["vs_fp32"]["reference"] == "ort-fp32"
    assert "ConvInteger" in by_name["ort-int8-dynamic"].op_profile["integer_ops"]
    assert by_name["ov-nncf-int8"].op_profile["vs_fp32"]["reference"] == "ov-fp32"
    assert by_name["ov-nncf-int8"].artifact["format"] == "openvino"
    record = by_name["ort-int8-aa"].artifact["passes"][-1]
    assert record["pass"] == "quant.int8_accuracy_aware" and record["met_budget"] is True
    assert record["validation_samples"] == 360 and isinstance(record["layers_in_float"], list)
