"""Batch sizes from a profile: dynamic-batch export, batched measurement, and the skip for a fixed batch axis."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mcbench.bench.latency import QUICK_PLAN
from mcbench.bench.measure import batched, measure_in_process, repeated
from mcbench.optimizer.graph_stats import fixed_batch_inputs
from mcbench.optimizer.intake import InputOverride, load_onnx
from mcbench.optimizer.recipes import VariantSpec, with_batch_sizes
from mcbench.optimizer.targets import Target, batch_skip_reason
from tests.conftest import make_linear_onnx


def test_batched_joins_consecutive_samples_and_keeps_the_remainder():
    samples = [{"x": np.full((1, 2), i, np.float32)} for i in range(5)]
    groups = batched(samples, 2)
    assert [g["x"].shape[0] for g in groups] == [2, 2, 1]
    assert groups[1]["x"][:, 0].tolist() == [2.0, 3.0]
    assert batched(samples, 1) is samples
    assert repeated({"x": np.ones((1, 3))}, 4)["x"].shape == (4, 3)


def test_batch_sizes_multiply_the_matrix_and_name_the_variants():
    specs = with_batch_sizes([VariantSpec("ort-fp32", ("export.onnx",), Target("onnxruntime"))], (1, 8))
    assert [(s.name, s.batch_size) for s in specs] == [("ort-fp32", 1), ("ort-fp32-b8", 8)]


def test_fixed_batch_axis_is_found_and_skips_larger_batches(tmp_path):
    fixed = load_onnx(make_linear_onnx(tmp_path / "fixed.onnx", batch=1))
    dynamic = load_onnx(make_linear_onnx(tmp_path / "dynamic.onnx", batch="batch"), {"x": InputOverride((1, 4))})
    assert fixed_batch_inputs(fixed.path) == ["x"] and fixed_batch_inputs(dynamic.path) == []
    assert batch_skip_reason(fixed, 4) == "input(s) x have a fixed batch axis: batch size 4 cannot run"
    assert batch_skip_reason(fixed, 1) is None and batch_skip_reason(dynamic, 4) is None


def test_batched_measurement_gives_the_same_outputs_as_batch_one(tmp_path):
    artifact = load_onnx(make_linear_onnx(tmp_path / "m.onnx", batch="batch"), {"x": InputOverride((1, 4))}).to_dict()
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, 4)).astype(np.float32)} for _ in range(7)]
    target = Target("onnxruntime", threads=1).to_dict()
    one = measure_in_process(artifact, target, samples, samples[0], QUICK_PLAN, 1)
    four = measure_in_process(artifact, target, samples, samples[0], QUICK_PLAN, 4)
    assert four.outputs.shape == (7, 3)
    np.testing.assert_allclose(four.outputs, one.outputs, rtol=1e-5)


def test_torch_export_has_a_dynamic_batch_axis_unless_asked_not_to(tmp_path):
    from mcbench.optimizer.intake_torch import from_factory
    from mcbench.optimizer.passes import PassContext, apply_passes

    base = from_factory("tests.zoo:conv_net", None, {"x": InputOverride((1, 3, 16, 16))}, tmp_path / "src")
    dynamic = apply_passes(base, ("export.onnx",), PassContext(), tmp_path / "d")
    static = apply_passes(base, ("export.onnx(dynamic_batch=false)",), PassContext(), tmp_path / "s")
    assert fixed_batch_inputs(dynamic.path) == [] and dynamic.passes[-1]["batch"] == "dynamic"
    assert fixed_batch_inputs(static.path) == [s.name for s in static.inputs]


PROFILE = """
name = "batchy"
device = "cpu"
batch_sizes = [1, 4]
[cpu]
cores = 1
[[targets]]
runtime = "onnxruntime"
providers = ["CPUExecutionProvider"]
"""


@pytest.mark.slow
@pytest.mark.parametrize(("batch", "b4_status"), [("batch", "ok"), (1, "skipped")])
def test_profile_batch_sizes_in_a_run(tmp_path, batch, b4_status):
    model = make_linear_onnx(tmp_path / "m.onnx", batch=batch)
    (tmp_path / "batchy.toml").write_text(PROFILE)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--input", "x=1,4", "--quick", "--no-load",
         "--profile", str(tmp_path / "batchy.toml"), "--variants", "batchy:ort-fp32-b4", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    variants = {v["name"]: v for v in json.loads((out / "results.json").read_text())["variants"]}
    b4 = variants["batchy:ort-fp32-b4"]
    assert b4["status"] == b4_status and b4["settings"]["batch_size"] == 4
    if b4_status == "ok":
        assert b4["accuracy"]["agreement"] == 1.0 and b4["latency"]["count"] > 0
    else:
        assert b4["error"] == "input(s) x have a fixed batch axis: batch size 4 cannot run"


def test_a_static_retry_that_dynamo_exports_keeps_no_earlier_fallback_reason(monkeypatch, tmp_path):
    from mcbench.optimizer.passes import PassError, convert

    def export(torch, module, example, names, out, dynamo, dynamic):
        if dynamic:
            raise RuntimeError("no dynamic batch here")

    monkeypatch.setattr(convert, "_export", export)
    record: dict = {}
    with pytest.raises(PassError, match="failed with both exporters"):
        convert._export_either(None, None, (), [], tmp_path / "m.onnx", record, dynamic=True)
    assert record["fallback_reason"] == "RuntimeError: no dynamic batch here"
    convert._export_either(None, None, (), [], tmp_path / "m.onnx", record, dynamic=False)
    assert record["exporter"] == "torch.export (dynamo)" and "fallback_reason" not in record
