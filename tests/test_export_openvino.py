"""export.openvino: OpenVINO IR straight from a PyTorch module, checked against it; refused on an ONNX model."""

from __future__ import annotations

import pytest

from mcbench.optimizer.passes import PassContext, apply_step
from mcbench.optimizer.recipe_syntax import RecipeError
from mcbench.optimizer.recipes import parse_named_recipe, recipe_variants
from mcbench.optimizer.targets import Target, open_session
from tests.test_prune import BERT_SPECS, SPEC, _artifact

pytest.importorskip("openvino")


@pytest.mark.parametrize(("factory", "specs"), [("tests.test_prune:residual_net", SPEC),
                                                ("tests.test_prune:tiny_bert", BERT_SPECS)])
def test_converts_a_module_to_an_ir_that_matches_it(tmp_path, factory, specs):
    base = _artifact(tmp_path, factory, specs)
    ctx = PassContext()
    ir = apply_step(base, "export.openvino", ctx, tmp_path / "ir")
    assert ir.format == "openvino" and ir.path.name == "model.xml" and ir.path.with_suffix(".bin").stat().st_size > 0
    record = ir.passes[-1]
    assert record["pass"] == "export.openvino" and record["max_abs_diff_vs_module"] < 1e-3
    session = open_session(ir, Target("openvino", options={"precision": "f32"}))
    assert session.input_names == [s.name for s in specs]
    assert ctx.messages[-1].startswith("converted to OpenVINO IR from PyTorch in ")


def test_a_recipe_with_it_runs_on_openvino_only_and_is_refused_on_an_onnx_model():
    specs = recipe_variants(parse_named_recipe("direct=export.openvino"), "torch")
    assert [(s.name, s.target.runtime) for s in specs] == [("ov-direct", "openvino")]
    with pytest.raises(RecipeError, match="^export.openvino works on a PyTorch or PyTorch .exported program. model, "
                                          "and at that point of the recipe the model is ONNX$"):
        recipe_variants(parse_named_recipe("export.openvino"), "onnx")
