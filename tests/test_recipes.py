"""Recipe text: parsed into steps, checked against the passes before any work, never executed."""

from __future__ import annotations

import pytest

from optimizer.passes import expand_recipe
from optimizer.recipe_syntax import RecipeError, Step, bind_arguments, parse_recipe


def test_parses_a_chain_with_positional_keyword_and_bare_word_arguments():
    steps = parse_recipe("prune.structured(0.3) + quant.int8_static(method=entropy, per_channel=false)")
    assert steps == (
        Step("prune.structured", (0.3,)),
        Step("quant.int8_static", (), (("method", "entropy"), ("per_channel", False))),
    )
    assert [str(s) for s in steps] == ["prune.structured(0.3)", "quant.int8_static(method=entropy, per_channel=false)"]


def test_canonical_text_round_trips():
    text = "export.onnx + quant.int8_static(method='a b', n=-2)"
    steps = parse_recipe(text)
    assert parse_recipe(" + ".join(map(str, steps))) == steps
    assert str(steps[1]) == "quant.int8_static(method='a b', n=-2)"


def test_empty_recipe_is_the_model_as_given():
    assert parse_recipe("  ") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prune.structured(0.3", "does not parse"),
        ("quant.int8_static(__import__('os'))", "is not a number, word or quoted string"),
        ("quant.int8_static(**opts)", r"'\*\*' is not allowed"),
        ("'quant'", "expected a pass name"),
        ("prune.structured([1, 2])", "is not a number, word or quoted string"),
    ],
)
def test_bad_recipe_text_is_refused_with_the_reason(text, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(text)


def _pass(artifact, ctx, out_dir, sparsity: float = 0.5, method: str = "minmax", per_channel: bool = True):
    return artifact


def test_arguments_bind_to_the_pass_signature_with_types_checked():
    assert bind_arguments(Step("p", (1,), (("method", "entropy"),)), _pass) == {"sparsity": 1.0, "method": "entropy"}
    with pytest.raises(RecipeError, match="has no parameter 'sparsty'"):
        bind_arguments(Step("p", (), (("sparsty", 0.3),)), _pass)
    with pytest.raises(RecipeError, match="sparsity must be float, got fast"):
        bind_arguments(Step("p", ("fast",)), _pass)
    with pytest.raises(RecipeError, match="per_channel must be bool, got 1"):
        bind_arguments(Step("p", (), (("per_channel", 1),)), _pass)
    with pytest.raises(RecipeError, match="takes at most 3 argument"):
        bind_arguments(Step("p", (0.1, "a", True, 4)), _pass)


def test_expand_puts_the_export_before_onnx_passes_of_a_torch_model():
    steps = expand_recipe(parse_recipe("quant.int8_dynamic"), "torch")
    assert [str(s) for s in steps] == ["export.onnx", "quant.int8_dynamic"]
    assert expand_recipe(parse_recipe("quant.int8_dynamic"), "onnx") == parse_recipe("quant.int8_dynamic")


def test_expand_refuses_a_pass_that_cannot_apply_before_any_work():
    with pytest.raises(RecipeError, match="export.onnx works on a PyTorch or PyTorch .exported program. model, "
                                          "and at that point of the recipe the model is ONNX"):
        expand_recipe(parse_recipe("export.onnx"), "onnx")
    with pytest.raises(RecipeError, match="unknown pass 'prune.magic'"):
        expand_recipe(parse_recipe("prune.magic(0.5)"), "torch")
    with pytest.raises(RecipeError, match="quant.int8_dynamic has no parameter 'bits'"):
        expand_recipe(parse_recipe("quant.int8_dynamic(bits=4)"), "onnx")
