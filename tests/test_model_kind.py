"""The model's kind (transformer, CNN, other) and the default matrix that fits it, with why each variant is there."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.model_kind import detect_kind, kind_of_ops
from mcbench.optimizer.passes import expand_recipe
from mcbench.optimizer.recipe_syntax import parse_recipe
from mcbench.optimizer.recipes import all_kind_variants, kind_variants, search_space
from tests.conftest import make_linear_onnx
from tests.test_prune import BERT_SPECS, SPEC, _artifact

BASE = ["ort-fp32", "ort-int8-dynamic", "ort-int8-static", "ov-fp32"]


def test_kind_of_a_pytorch_transformer_a_cnn_and_an_onnx_linear_model(tmp_path):
    bert = detect_kind(_artifact(tmp_path, "tests.test_prune:tiny_bert", BERT_SPECS))
    assert bert.kind == "transformer" and bert.reason.startswith("1 attention/Softmax, 3 layer norms")
    cnn = detect_kind(_artifact(tmp_path, "tests.test_prune:residual_net", SPEC))
    assert cnn.kind == "cnn" and "convolutions" in cnn.reason
    linear = detect_kind(Artifact(make_linear_onnx(tmp_path / "l.onnx"), "onnx", (InputSpec("x", (1, 4)),)))
    assert linear.kind == "other"
    assert linear.reason == "no convolution, no attention with layer norms (1 matrix products)"


def test_kind_of_onnx_operators():
    assert kind_of_ops(Counter({"Attention": 6, "SkipLayerNormalization": 12, "MatMul": 12})).kind == "transformer"
    assert kind_of_ops(Counter({"Softmax": 1, "Conv": 20, "LayerNormalization": 1, "MatMul": 2})).kind == "cnn"
    assert kind_of_ops(Counter({"Softmax": 1, "MatMul": 3})).kind == "other"  # attention without layer norms


def _recipes(specs) -> dict[str, tuple[str, ...]]:
    return {s.name: s.recipe for s in specs}


def test_transformer_matrix_has_fusion_with_per_channel_int8_and_nncf():
    specs = kind_variants("transformer", from_torch=True, can_train=True)
    recipes = _recipes(specs)
    assert list(recipes) == ["torch-fp32", *BASE, "ort-fused-int8-dynamic", "ov-int8"]
    assert recipes["ort-fused-int8-dynamic"] == ("export.onnx(exporter=torchscript)", "fuse.transformer",
                                                 "quant.int8_dynamic(per_channel=true)")
    assert recipes["ov-int8"] == ("export.onnx", "nncf.int8")
    # onnxruntime variants of a PyTorch transformer: TorchScript's graph; static INT8 that keeps attention usable.
    assert recipes["ort-fp32"] == ("export.onnx(exporter=torchscript)",)
    assert recipes["ort-int8-static"] == ("export.onnx(exporter=torchscript)", "quant.int8_static_smooth")
    assert recipes["ov-fp32"] == ("export.onnx",)
    static = next(s for s in specs if s.name == "ort-int8-static")
    assert static.why.startswith("transformer: static INT8 of the matrix products only")
    from_onnx = _recipes(kind_variants("transformer", from_torch=False, can_train=False))
    assert from_onnx["ort-fp32"] == ("export.onnx",)
    assert from_onnx["ort-int8-static"] == ("export.onnx", "quant.int8_static_smooth")
    searched = _recipes(search_space("transformer", from_torch=True, can_train=False))
    assert searched["ort-int8-static"] == recipes["ort-int8-static"] and "ort-int8-static-pt" not in searched
    assert _recipes(kind_variants("cnn", from_torch=True, can_train=False))["ort-int8-static"] == (
        "export.onnx", "quant.int8_static")
    assert _recipes(kind_variants("transformer", from_torch=False, can_train=False))["ort-fused-int8-dynamic"] == (
        "fuse.transformer", "quant.int8_dynamic(per_channel=true)")
    assert all(s.why for s in specs)


def test_cnn_matrix_has_nncf_int8_and_pruning_only_with_training_data():
    with_data = _recipes(kind_variants("cnn", from_torch=True, can_train=True))
    assert list(with_data) == ["torch-fp32", *BASE, "ov-int8", "ort-fused-int8-static", "ov-static-int8",
                               "ort-pruned-int8-static"]
    assert with_data["ort-fused-int8-static"] == ("export.onnx", "fuse.conv_affine", "quant.int8_static")
    assert with_data["ov-static-int8"] == ("export.onnx", "fuse.conv_affine", "shape.static", "nncf.int8")
    assert with_data["ort-pruned-int8-static"] == ("prune.structured", "export.onnx", "quant.int8_static")
    assert "ort-pruned-int8-static" not in _recipes(kind_variants("cnn", from_torch=True, can_train=False))
    assert "ort-pruned-int8-static" not in _recipes(kind_variants("cnn", from_torch=False, can_train=True))
    assert list(_recipes(kind_variants("other", from_torch=False, can_train=True))) == BASE


@pytest.mark.parametrize("from_torch", [True, False])
def test_every_kind_variant_recipe_applies_to_its_source(from_torch):
    """An ONNX source's export.onnx steps are no-ops the build skips; every other step must apply."""
    source = "torch" if from_torch else "onnx"
    for spec in all_kind_variants(from_torch):
        steps = tuple(s for text in spec.recipe for s in parse_recipe(text))
        assert from_torch or not any(s.name.startswith("prune") for s in steps)
        expand_recipe(tuple(s for s in steps if from_torch or s.name != "export.onnx"), source)


@pytest.mark.slow
def test_a_run_says_the_kind_and_why_each_variant_is_there(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", "tests.zoo:conv_net", "--input",
                           "x=1,3,8,8", "--variants", "ov-int8", "--quick", "--no-load", "--no-cache", "--out",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["kind"]["kind"] == "cnn"
    assert [v["name"] for v in results["variants"]] == ["torch-fp32", "ov-int8"]
    assert results["variants"][1]["settings"]["why"] == "CNN: NNCF INT8 on OpenVINO"
    said = proc.stdout + proc.stderr
    assert "model kind: cnn (" in said and "  ov-int8: CNN: NNCF INT8 on OpenVINO" in said
