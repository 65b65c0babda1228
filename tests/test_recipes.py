"""Recipe text: parsed into steps, checked against the passes before any work, never executed."""

from __future__ import annotations

import pytest

from mcbench.optimizer.passes import expand_recipe
from mcbench.optimizer.recipe_syntax import RecipeError, Step, bind_arguments, parse_recipe


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


# --- named recipes, the variants they expand into, profiles' recipes and the CLI ---

from mcbench.optimizer.profiles import ProfileError, parse_profile  # noqa: E402
from mcbench.optimizer.recipes import parse_named_recipe, profile_recipe_variants, recipe_variants  # noqa: E402


def test_named_recipe_takes_an_optional_name_and_keeps_keyword_arguments():
    named = parse_named_recipe("small=prune.structured(0.3) + quant.int8_static(method=entropy)")
    assert named.name == "small"
    assert [str(s) for s in named.steps] == ["prune.structured(0.3)", "quant.int8_static(method=entropy)"]
    bare = parse_named_recipe("quant.int8_static(method=entropy)")  # the '=' inside the call is not a name
    assert bare.name == "quant.int8_static-method_entropy"
    assert parse_named_recipe("prune.unstructured(0.5)+quant.int8_dynamic").name == (
        "prune.unstructured-0.5_quant.int8_dynamic")


def test_recipe_variants_follow_the_final_format():
    onnx = recipe_variants(parse_named_recipe("p=prune.structured(0.3) + quant.int8_dynamic"), "torch")
    assert [(v.name, v.target.runtime) for v in onnx] == [("ort-p", "onnxruntime"), ("ov-p", "openvino")]
    assert onnx[0].recipe == ("prune.structured(0.3)", "export.onnx", "quant.int8_dynamic")
    torch_only = recipe_variants(parse_named_recipe("u=prune.unstructured(0.5)"), "torch")
    assert [(v.name, v.target.runtime, v.recipe) for v in torch_only] == [
        ("torch-u", "torch", ("prune.unstructured(0.5)",))]
    with pytest.raises(RecipeError, match="works on a PyTorch model"):
        recipe_variants(parse_named_recipe("prune.structured(0.3)"), "onnx")
    with pytest.raises(RecipeError, match="unknown pass 'prune.magic'"):
        recipe_variants(parse_named_recipe("prune.magic"), "torch")


def test_profile_recipes_are_validated_on_load_and_expand_for_its_runtimes():
    data = {"name": "p", "cpu": {"cores": 2}, "targets": [{"runtime": "onnxruntime"}, {"runtime": "torch"}],
            "recipes": ["q=quant.int8_dynamic", "u=prune.unstructured(0.5)"]}
    profile = parse_profile(data, "p.toml")
    specs = profile_recipe_variants(profile, "torch")
    assert [(s.name, s.target.runtime, s.profile) for s in specs] == [
        ("ort-q", "onnxruntime", "p"), ("torch-u", "torch", "p")]
    with pytest.raises(ProfileError, match=r"p.toml: recipes\[0\]: unknown pass 'quant.int3'"):
        parse_profile({**data, "recipes": ["quant.int3"]}, "p.toml")
    with pytest.raises(ProfileError, match=r"p.toml: recipes\[1\]: recipe .* does not parse"):
        parse_profile({**data, "recipes": ["quant.int8_dynamic", "prune.structured(0.3"]}, "p.toml")
    with pytest.raises(ProfileError, match="p.toml: recipes: expected a list of recipe strings"):
        parse_profile({**data, "recipes": "quant.int8_dynamic"}, "p.toml")


def test_cli_refuses_a_bad_recipe_before_work(tmp_path, capsys):
    from mcbench.cli import main

    out = tmp_path / "run"
    assert main(["run", "--recipe", "prune.structured(ratio=fast)", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        "mcbench: --recipe 'prune.structured(ratio=fast)': prune.structured(ratio=fast): ratio must be float, got fast")
    assert not out.exists()


@pytest.mark.slow
def test_cli_recipe_runs_and_a_second_run_reuses_the_cache(tmp_path):
    import json
    import subprocess
    import sys

    args = [sys.executable, "-m", "mcbench.cli", "run", "--model", "tests.zoo:conv_net", "--input", "x=1,3,8,8",
            "--recipe", "u=prune.unstructured(0.5)", "--quick", "--no-load", "--cache-dir", str(tmp_path / "cache")]
    first = subprocess.run([*args, "--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert [v["name"] for v in results["variants"]] == ["torch-fp32", "torch-u"]
    pruned = results["variants"][1]
    assert pruned["status"] == "ok" and pruned["recipe"] == ["prune.unstructured(0.5)"]
    assert pruned["passes"][0]["pass"] == "prune.unstructured" and pruned["passes"][0]["sparsity_reached"] == 0.5
    assert "built prune.unstructured(0.5)" in first.stderr
    second = subprocess.run([*args, "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "reused prune.unstructured(0.5) from the cache" in second.stderr
    assert "built prune.unstructured" not in second.stderr
    rerun = json.loads((tmp_path / "b" / "results.json").read_text())["variants"][1]
    assert rerun["passes"][0]["cached"] is True
