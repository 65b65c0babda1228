"""Graph fusion for transformer encoders with onnxruntime's transformer optimizer.

Fusing Attention, SkipLayerNormalization and BiasGelu does little for an FP32 graph on a CPU; it is
what lets dynamic INT8 quantize whole attention blocks, which is where the peers' INT8 speed comes
from. Only onnxruntime's own (Python) fusions run (opt_level 0), so the graph stays portable across
onnxruntime builds; the fused operators are onnxruntime contrib ops that OpenVINO does not read.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact, generated_inputs
from mcbench.optimizer.passes import PassContext, PassError, register
from mcbench.optimizer.targets import Target, open_session

# The fused operators that mark a transformer pattern, as onnxruntime's statistics name them.
TRANSFORMER_FUSIONS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
                       "BiasGelu", "FastGelu", "GemmFastGelu")
FUSION_TOLERANCE = 1e-3  # max |fused - source|, relative to max(1, max |source output|)
CHECK_SAMPLES = 2


@register("fuse.transformer", takes=("onnx",), libraries=("onnx", "onnxruntime"))
def fuse_transformer(artifact: Artifact, ctx: PassContext, out_dir: Path, num_heads: int = 0,
                     hidden_size: int = 0) -> Artifact:
    """Fuse a BERT-family graph's attention, skip layer norms and GELUs; refuse a graph with none of them.

    `num_heads`/`hidden_size` 0 lets onnxruntime read them from the graph (the usual case).
    """
    require("onnxruntime")
    from onnxruntime.transformers.optimizer import optimize_model

    out = Path(out_dir) / "model.fused.onnx"
    start = time.perf_counter()
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    try:
        fused = optimize_model(str(artifact.path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=0)
    except Exception as exc:
        raise PassError(f"cannot fuse.transformer: onnxruntime's optimizer failed: {first_line(exc)}") from exc
    fusions = fusion_counts(fused.get_fused_operator_statistics())
    if not any(fusions.get(op) for op in TRANSFORMER_FUSIONS):
        raise PassError("cannot fuse.transformer: no transformer pattern (attention, skip layer norm, "
                        "bias GELU) in this graph")
    fused.save_model_to_file(str(out))
    record: dict[str, Any] = {"pass": "fuse.transformer", "fusions": fusions, "opt_level": 0,
                              "nodes_before": _node_count(artifact.path), "nodes_after": len(fused.model.graph.node)}
    result = Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))
    record["max_abs_diff_vs_source"] = _check_fused(artifact, result)
    record["seconds"] = round(time.perf_counter() - start, 3)
    if not fusions.get("Attention") and not fusions.get("MultiHeadAttention"):
        record["note"] = attention_note(artifact)
    ctx.log(f"fuse.transformer: {', '.join(f'{op} x{n}' for op, n in fusions.items())}"
            + (f" ({record['note']})" if "note" in record else ""))
    return result


def fusion_counts(statistics: dict[str, int]) -> dict[str, int]:
    """The fused operators onnxruntime made, by name, leaving out those it made none of."""
    return {op: int(n) for op, n in statistics.items() if n}


def attention_note(artifact: Artifact) -> str:
    """Why attention was not fused, where the export record tells: the dynamo exporter's graph does not match."""
    exporter = next((p.get("exporter", "") for p in artifact.passes if p.get("pass") == "export.onnx"), "")
    if "dynamo" in exporter:
        return ("attention not fused: onnxruntime's patterns do not match the torch.export graph; "
                "export.onnx(exporter=torchscript) before this pass lets it fuse")
    return "attention not fused: the graph's attention does not match onnxruntime's BERT patterns"


def _node_count(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def _check_fused(source: Artifact, fused: Artifact) -> float:
    """Run both graphs on the same generated inputs; refuse a fused graph that disagrees with its source."""
    a, b = open_session(source, Target("onnxruntime")), open_session(fused, Target("onnxruntime"))
    worst, scale = output_difference(a, b, source)
    if worst > FUSION_TOLERANCE * scale:
        raise PassError(f"cannot fuse.transformer: the fused graph differs from its source by {worst:.3g} "
                        f"(tolerance {FUSION_TOLERANCE * scale:.3g}) on generated inputs")
    return worst


def output_difference(a, b, source: Artifact) -> tuple[float, float]:
    """The largest absolute difference between sessions a and b on CHECK_SAMPLES generated inputs of `source`, and
    the scale to hold it against (the largest |output| of a, at least 1)."""
    worst, scale = 0.0, 1.0
    for feeds in generated_inputs(source.inputs, CHECK_SAMPLES, seed=1):
        for ref, got in zip(a.run(feeds), b.run(feeds), strict=True):
            worst = max(worst, float(np.max(np.abs(np.asarray(ref, np.float64) - got))))
            scale = max(scale, float(np.max(np.abs(ref))))
    return worst, scale
