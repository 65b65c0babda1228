"""Passes, sessions and in-process measurement on a tiny ONNX model."""

import numpy as np
import pytest

from mcbench.bench.accuracy import accuracy_of, collect_outputs
from mcbench.bench.isolate import ChildError, call_in_child
from mcbench.bench.latency import TimingPlan, halves_disagree, measure_latency
from mcbench.optimizer.artifact import generated_inputs
from mcbench.optimizer.intake import load_onnx
from mcbench.optimizer.passes import PassContext, PassError, apply_passes, pass_record
from mcbench.optimizer.recipe_syntax import RecipeError
from mcbench.optimizer.targets import Target, open_session


def test_onnxruntime_and_openvino_agree_on_tiny_model(linear_onnx):
    artifact = load_onnx(linear_onnx)
    feeds = generated_inputs(artifact.inputs, 1)[0]
    ort_out = open_session(artifact, Target("onnxruntime", threads=1)).run(feeds)[0]
    ov_out = open_session(artifact, Target("openvino", threads=1)).run(feeds)[0]
    np.testing.assert_allclose(ort_out, ov_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["quant.int8_dynamic", "quant.int8_static"])
def test_quantization_passes_write_a_model_close_to_fp32(linear_onnx, tmp_path, name):
    artifact = load_onnx(linear_onnx)
    calibration = generated_inputs(artifact.inputs, 64, seed=3)
    quantized = apply_passes(artifact, (name,), PassContext(calibration, "generated"), tmp_path / "q")
    assert quantized.path.exists() and quantized.path != artifact.path
    assert quantized.passes[-1]["pass"] == name
    samples = calibration[:8]  # inside the calibrated range: this checks the pass, not range clipping
    fp32 = collect_outputs(open_session(artifact, Target("onnxruntime")), samples)
    int8 = collect_outputs(open_session(quantized, Target("onnxruntime")), samples)
    assert np.max(np.abs(fp32 - int8)) < 0.1 * np.max(np.abs(fp32))


def test_static_quantization_without_calibration_is_refused(linear_onnx, tmp_path):
    with pytest.raises(PassError, match="quant.int8_static needs calibration data"):
        apply_passes(load_onnx(linear_onnx), ("quant.int8_static",), PassContext(), tmp_path)


def test_unknown_pass_lists_known_ones():
    with pytest.raises(RecipeError, match="unknown pass 'quant.int3'; known passes: export.onnx"):
        pass_record("quant.int3")


def test_measure_latency_meets_minimums(linear_onnx):
    session = open_session(load_onnx(linear_onnx), Target("onnxruntime", threads=1))
    feeds = generated_inputs(load_onnx(linear_onnx).inputs, 1)[0]
    stats, _ = measure_latency(session, feeds, TimingPlan(warmup_runs=2, min_runs=50, min_seconds=0.1, max_seconds=1))
    assert stats.count >= 50 and len(stats.samples_us) == stats.count
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms


def test_halves_disagree_detects_a_shift():
    assert halves_disagree([1.0] * 10 + [1.5] * 10, 0.05)
    assert not halves_disagree([1.0, 1.01] * 10, 0.05)


def test_accuracy_of_counts_top1_and_agreement():
    outputs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    baseline = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]])
    acc = accuracy_of(outputs, baseline, np.array([1, 1, 0]), "toy")
    assert acc.top1 == pytest.approx(1 / 3)
    assert acc.agreement == pytest.approx(2 / 3)
    assert acc.max_abs_diff == pytest.approx(0.4)


def test_accuracy_of_rejects_wrong_label_count():
    with pytest.raises(ValueError, match="2 labels for 3 outputs"):
        accuracy_of(np.zeros((3, 2)), None, np.array([0, 1]), "toy")


def _boom() -> None:
    raise RuntimeError("kaboom")


def _crash() -> None:
    import os

    os._exit(7)


def test_call_in_child_returns_errors_as_data():
    assert call_in_child(sum, [1, 2, 3]) == 6
    with pytest.raises(ChildError, match="RuntimeError: kaboom"):
        call_in_child(_boom)
    with pytest.raises(ChildError, match="exit code 7"):
        call_in_child(_crash)
