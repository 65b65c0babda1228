"""fuse.transformer: onnxruntime's transformer fusions on graphs mcbench exports, counted; refused without a pattern."""

from __future__ import annotations

import onnx
import pytest

from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.passes import PassContext, PassError, apply_step
from tests.conftest import make_linear_onnx
from tests.test_prune import BERT_SPECS, _artifact

torch = pytest.importorskip("torch")


def tiny_hf_bert():
    """A 2-layer Hugging Face BERT (hidden 64, 2 heads) with random weights, returning the last hidden state."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128, max_position_embeddings=16)
    torch.manual_seed(0)
    bert = transformers.BertModel(config).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Hidden().eval()


def _ops(path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@pytest.mark.slow
def test_fuses_attention_skip_layer_norm_and_gelu_on_a_torchscript_export(tmp_path):
    base = _artifact(tmp_path, "tests.test_fuse:tiny_hf_bert", BERT_SPECS)
    out = apply_step(base, "export.onnx(exporter=torchscript)", PassContext(),
                     tmp_path / "export")
    assert out.passes[-1]["exporter"] == "torchscript"
    fused = apply_step(out, "fuse.transformer", PassContext(), tmp_path / "fused")
    record = fused.passes[-1]
    assert record["fusions"]["Attention"] == 2  # one per layer
    assert record["fusions"]["SkipLayerNormalization"] == 4  # two per layer
    assert record["fusions"].get("BiasGelu", 0) + record["fusions"].get("FastGelu", 0) == 2
    assert record["fusions"]["EmbedLayerNormalization"] == 1
    ops = _ops(fused.path)
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] == 4
    assert record["nodes_after"] == sum(ops.values()) < record["nodes_before"]
    assert record["max_abs_diff_vs_source"] < 1e-3
    assert "note" not in record


@pytest.mark.slow
def test_dynamo_export_fuses_norms_and_gelu_and_says_why_attention_was_not(tmp_path):
    base = _artifact(tmp_path, "tests.test_prune:tiny_bert", BERT_SPECS)
    ctx = PassContext()
    fused = apply_step(apply_step(base, "export.onnx", ctx, tmp_path / "export"), "fuse.transformer", ctx,
                       tmp_path / "fused")
    record = fused.passes[-1]
    assert record["fusions"]["SkipLayerNormalization"] == 2 and record["fusions"]["BiasGelu"] == 1
    assert "Attention" not in record["fusions"]
    assert "export.onnx(exporter=torchscript)" in record["note"]
    assert any(m.startswith("fuse.transformer: ") and "SkipLayerNormalization x2" in m for m in ctx.messages)


def test_refuses_a_graph_with_no_transformer_pattern(tmp_path):
    model = Artifact(make_linear_onnx(tmp_path / "linear.onnx"), "onnx", (InputSpec("x", (1, 4)),))
    with pytest.raises(PassError) as err:
        apply_step(model, "fuse.transformer", PassContext(), tmp_path / "fused")
    assert str(err.value) == ("cannot fuse.transformer: no transformer pattern (attention, skip layer norm, "
                              "bias GELU) in this graph")
    assert not (tmp_path / "fused" / "model.fused.onnx").exists()


def test_refuses_a_model_that_is_not_onnx(tmp_path):
    base = _artifact(tmp_path, "tests.test_prune:tiny_bert", BERT_SPECS)
    with pytest.raises(PassError, match="^fuse.transformer needs an ONNX model; put export.onnx before it"):
        apply_step(base, "fuse.transformer", PassContext(), tmp_path / "fused")


def _weight_scales(path) -> dict[str, tuple[tuple[int, ...], int]]:
    """For each integer-weight node: its weight scale's shape and the weight's output width."""
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type in ("QAttention", "MatMulInteger"):
            weight = node.input[1]
            scale = node.input[4] if node.op_type == "QAttention" else None
            if scale is None:  # MatMulInteger: the weight's scale feeds the Mul after it, named after the weight
                scale = weight.replace("_quantized", "_scale")
            if weight in inits and scale in inits:
                out[node.name] = (inits[scale].shape, inits[weight].shape[-1])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("per_channel", [True, False])
def test_dynamic_int8_of_a_fused_graph_has_one_weight_scale_a_channel(tmp_path, per_channel):
    base = _artifact(tmp_path, "tests.test_fuse:tiny_hf_bert", BERT_SPECS)
    ctx = PassContext()
    fused = apply_step(apply_step(base, "export.onnx(exporter=torchscript)", ctx, tmp_path / "export"),
                       "fuse.transformer", ctx, tmp_path / "fused")
    quantized = apply_step(fused, f"quant.int8_dynamic(per_channel={str(per_channel).lower()})", ctx,
                           tmp_path / "q")
    assert quantized.passes[-1]["per_channel"] is per_channel
    ops = _ops(quantized.path)
    assert ops["QAttention"] == 2 and ops["MatMulInteger"] == 6  # QKV in QAttention; output projection and FFN
    scales = _weight_scales(quantized.path)
    assert len(scales) == 8
    for shape, width in scales.values():
        assert shape == ((width,) if per_channel else ())  # 192 for the QKV weight, 64 or 128 for the others
