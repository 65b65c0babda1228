"""Pruning passes on tiny models: the sparsity reached, channels really removed, the result still runs and exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mcbench.cli import main
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.intake_torch import load_torch_module
from mcbench.optimizer.passes import PassContext, apply_step, expand_recipe
from mcbench.optimizer.recipe_syntax import RecipeError, parse_recipe


class ResidualNet(nn.Module):
    """Conv, batch norm, a residual add and a classifier: the couplings structured pruning must respect."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 32), nn.ReLU(),
                                  nn.Linear(32, 4))

    def forward(self, x):
        y = self.stem(x)
        return self.head(torch.relu(self.body(y) + y))


def residual_net() -> nn.Module:
    torch.manual_seed(0)
    return ResidualNet().eval()


def tiny_bert() -> nn.Module:
    from mcbench.models import bert_like

    return bert_like(layers=1, hidden=128, heads=2, ffn=128, vocab=50, max_len=16)  # Q, FFN widths == hidden


SPEC = (InputSpec("x", (1, 3, 8, 8)),)
BERT_SPECS = (InputSpec("input_ids", (1, 16), "int64", 0, 50), InputSpec("attention_mask", (1, 16), "int64", 1, 2))


def _artifact(tmp_path, factory: str, specs=SPEC) -> Artifact:
    from mcbench.base.imports import load_factory

    weights = tmp_path / "base.pt"
    torch.save(load_factory(factory)().state_dict(), weights)
    return Artifact(weights, "torch", specs, factory=factory)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_unstructured_reaches_the_sparsity_and_keeps_shapes(tmp_path, sparsity):
    base = _artifact(tmp_path, "tests.test_prune:residual_net")
    out = apply_step(base, f"prune.unstructured({sparsity})", PassContext(), tmp_path / "out")
    record = out.passes[-1]
    module = load_torch_module(out)
    weights = [m.weight for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(zeros - sparsity) < 0.01
    assert record["sparsity_reached"] == pytest.approx(zeros, abs=1e-4)
    assert record["nonzero_parameters"] < record["parameters"] == _params(module) == _params(residual_net())
    assert record["weights_zlib_bytes_after"] < record["weights_zlib_bytes_before"]


def test_unstructured_refuses_a_sparsity_outside_0_1(tmp_path):
    from mcbench.optimizer.passes import PassError

    with pytest.raises(PassError, match="sparsity must lie between 0 and 1, got 1.5"):
        apply_step(_artifact(tmp_path, "tests.test_prune:residual_net"), "prune.unstructured(1.5)", PassContext(),
                   tmp_path / "out")


def test_structured_removes_channels_through_batch_norm_and_residual_add(tmp_path):
    base = _artifact(tmp_path, "tests.test_prune:residual_net")
    ctx = PassContext()
    out = apply_step(base, "prune.structured(0.5)", ctx, tmp_path / "out")
    record = out.passes[-1]
    module = load_torch_module(out)
    assert module.stem[0].out_channels == module.body[0].out_channels == 8  # coupled by the residual add
    assert module.stem[1].num_features == 8 and module.head[2].in_features == 8
    assert module.head[-1].out_features == 4  # the classifier keeps its classes
    assert record["parameters_after"] == _params(module) < record["parameters_before"] == _params(residual_net())
    assert record["flops_after"] < 0.5 * record["flops_before"]
    assert record["finetune"] == {"status": "no fine-tune: no training data"}
    assert module(torch.zeros(1, 3, 8, 8)).shape == (1, 4)
    exported = apply_step(out, "export.onnx", PassContext(), tmp_path / "onnx")
    assert exported.format == "onnx" and exported.path.is_file()


def test_structured_fine_tunes_when_training_data_is_given(tmp_path):
    rng = np.random.default_rng(0)
    train = ({"x": rng.standard_normal((40, 3, 8, 8)).astype(np.float32)}, rng.integers(0, 4, 40))
    out = apply_step(_artifact(tmp_path, "tests.test_prune:residual_net"), "prune.structured(0.3, finetune_epochs=2)",
                     PassContext(train=train), tmp_path / "out")
    finetune = out.passes[-1]["finetune"]
    assert finetune["status"] == "fine-tuned 2 epoch(s) on 40 samples"
    assert len(finetune["epoch_losses"]) == 2


def test_structured_prunes_whole_attention_heads_and_ffn_neurons(tmp_path):
    base = _artifact(tmp_path, "tests.test_prune:tiny_bert", BERT_SPECS)
    out = apply_step(base, "prune.structured(0.5)", PassContext(), tmp_path / "out")
    layer = load_torch_module(out).layers[0]
    assert layer.query.out_features == layer.key.out_features == layer.value.out_features == 64  # 2 heads -> 1
    assert layer.attn_out.in_features == 64 and layer.attn_out.out_features == 128  # hidden width kept
    assert layer.ffn_in.out_features == 64 and layer.ffn_out.out_features == 128
    assert out.passes[-1]["flops_after"] < 0.6 * out.passes[-1]["flops_before"]
    exported = apply_step(out, "export.onnx", PassContext(), tmp_path / "onnx")
    assert exported.passes[-1]["max_abs_diff_vs_module"] < 1e-3


def test_structured_pruning_of_an_onnx_model_is_refused_before_work():
    with pytest.raises(RecipeError, match="prune.structured works on a PyTorch model, and at that point of the "
                                          "recipe the model is ONNX"):
        expand_recipe(parse_recipe("prune.structured"), "onnx")
    with pytest.raises(RecipeError, match=r"prune.unstructured\(0.5\) works on a PyTorch model"):
        expand_recipe(parse_recipe("quant.int8_dynamic + prune.unstructured(0.5)"), "torch")


def test_cli_refuses_pruning_an_onnx_file_before_work(tmp_path, capsys, linear_onnx):
    out = tmp_path / "run"
    assert main(["run", "--model", str(linear_onnx), "--recipe", "prune.structured(0.3)", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        "mcbench: --recipe 'prune.structured(0.3)': prune.structured(0.3) works on a PyTorch model, "
        "and at that point of the recipe the model is ONNX")
    assert not out.exists()
