"""Static INT8 that keeps a transformer encoder usable: matrix products only, their outputs in float, and
SmoothQuant-style smoothing of their inputs.

Plain static QDQ (quant.int8_static) collapses a BERT-family encoder: on all-MiniLM-L6-v2 the embedding's
cosine to FP32 fell to 0.40. Measured, tensor by tensor (docs/passes.md: Static INT8 on a transformer):

- the attention scores plus the mask: the mask adds the float minimum (-3.4e38), so one scale for the
  tensor leaves the softmax nothing (Add or Softmax quantized: cosine 0.40). Only MatMul (and Gemm) is
  quantized here; Add, Softmax, LayerNormalization, GELU and Gather stay float;
- each MatMul's output: QDQ writes a Quantize/Dequantize pair after it too, and the second FFN layer's
  output carries the few large dimensions the residual stream needs (outputs quantized 0.944, kept float
  0.989). Outputs stay float here, so onnxruntime runs an integer matrix product that returns floats;
- the inputs that come out of a layer norm or a GELU have a few channels 10-30x the others, and one scale
  for the tensor spends its 256 levels on them. Smoothing (Xiao et al., SmoothQuant, 2023) divides each
  input channel j by s_j = max|X_j|^alpha / max|W_j|^(1-alpha), measured on the calibration data, and
  multiplies row j of every weight that reads it by s_j: the float function is unchanged, the outliers
  move into the weights, which have a scale a channel (alpha 0.7: cosine 0.998).

onnxruntime's own SmoothQuant option needs neural-compressor 2.x (3.x dropped its ONNX adaptor), which
pulls OpenCV and pycocotools; smoothing is ~40 lines of numpy here instead.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.passes import PassContext, PassError, register
from mcbench.optimizer.passes.quantize import (
    CALIBRATION_METHODS,
    LIBRARIES,
    PER_CHANNEL_OPSET,
    Method,
    WeightRange,
    _drop_intermediates,
    _prepared,
    _Reader,
    _static_record,
    weight_numerics,
)

QUANTIZED_OPS = ("MatMul", "Gemm")
# Initializers onnxruntime's MatMulAddFusion names (graph preparation runs it): it makes the same names again when
# a session optimises the quantized graph, and fails ("Attempt to replace the existing tensor"), so they are renamed.
FUSION_NAMES = ("gemm_input_shape", "gemm_output_shape")
SMOOTH_SUFFIX = "_smooth"


@register("quant.int8_static_smooth", takes=("onnx",), needs=("calibration",), libraries=LIBRARIES)
def int8_static_smooth(artifact: Artifact, ctx: PassContext, out_dir: Path, alpha: float = 0.7,
                       method: Method = "minmax", weight_range: WeightRange = "host") -> Artifact:
    """Static INT8 (QDQ) for transformers: MatMul/Gemm only, outputs kept float, inputs smoothed (SmoothQuant).

    `alpha` (0-1) is how much of an input's outlier range moves into the weights; 0 smooths nothing.
    """
    if not 0.0 <= alpha <= 1.0:
        raise PassError(f"quant.int8_static_smooth: alpha must be within 0 and 1, got {alpha}")
    import onnx

    q = require("onnxruntime.quantization")
    out_dir = Path(out_dir)
    start = time.perf_counter()
    numerics = weight_numerics(weight_range)
    record = _static_record("quant.int8_static_smooth", ctx, method, True, numerics)
    source = _prepared(artifact, out_dir, record, ctx, PER_CHANNEL_OPSET)
    model = onnx.load(str(source))
    _rename_fusion_initializers(model.graph)
    consumers = weighted_matmuls(model.graph)
    if not consumers:
        _drop_intermediates(out_dir)
        raise PassError("quant.int8_static_smooth: no MatMul or Gemm with a constant 2-D weight in this graph: "
                        "nothing to quantize (quant.int8_static handles convolutions)")
    smoothed = out_dir / "model.smoothed.onnx"
    record["alpha"] = alpha
    record["smoothed_inputs"] = smooth(model, consumers, input_channel_max(source, list(consumers),
                                                                            ctx.calibration), alpha) if alpha else 0
    onnx.save(model, str(smoothed))
    out = out_dir / "model.int8_static_smooth.onnx"
    try:
        q.quantize_static(
            str(smoothed), str(out), _Reader(ctx.calibration), quant_format=q.QuantFormat.QDQ, per_channel=True,
            reduce_range=numerics.reduce_range,
            activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
            calibrate_method=getattr(q.CalibrationMethod, CALIBRATION_METHODS[method]),
            op_types_to_quantize=list(QUANTIZED_OPS),
            extra_options={"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)},
        )
    except Exception as exc:
        raise PassError(f"quant.int8_static_smooth: onnxruntime's quantizer refused the graph "
                        f"({type(exc).__name__}: {first_line(exc)}; prepared by {record['prepare']})") from exc
    finally:
        _drop_intermediates(out_dir)
        smoothed.unlink(missing_ok=True)
    record.update(quantized_summary(out))
    record["seconds"] = round(time.perf_counter() - start, 3)
    ctx.log(f"static INT8 (smoothed, alpha {alpha}): {record['quantized_matmuls']} of {record['matmuls']} MatMul/Gemm "
            f"in INT8, {record['smoothed_inputs']} inputs smoothed; {', '.join(record['float_ops'])} kept float")
    return Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))


def weighted_matmuls(graph: Any) -> dict[str, list[Any]]:
    """The MatMul (and Gemm without transA) nodes whose second input is a constant 2-D float weight, grouped
    by their activation input."""
    from onnx import TensorProto, helper

    weights = {i.name for i in graph.initializer if len(i.dims) == 2 and i.data_type == TensorProto.FLOAT}
    constants = {i.name for i in graph.initializer}
    groups: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        if node.op_type not in QUANTIZED_OPS or node.input[1] not in weights or node.input[0] in constants:
            continue
        if node.op_type == "Gemm" and any(a.name == "transA" and helper.get_attribute_value(a) for a in node.attribute):
            continue
        groups[node.input[0]].append(node)
    return dict(groups)


def _transposed(node: Any) -> bool:
    """Whether the node's weight is stored (out, in): a Gemm with transB."""
    from onnx import helper

    return node.op_type == "Gemm" and any(a.name == "transB" and helper.get_attribute_value(a) for a in node.attribute)


def input_channel_max(model_path: Path, tensors: list[str], calibration: list[dict[str, np.ndarray]]) -> dict:
    """max |x| of each last-axis channel of each named tensor over the calibration samples."""
    import onnx

    ort = require("onnxruntime")
    model = onnx.load(str(model_path))
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors if t not in known)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor by its name
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    peak: dict[str, np.ndarray] = {}
    for feeds in calibration:
        values = session.run(tensors, {n: feeds[n] for n in names})
        for name, value in zip(tensors, values, strict=True):
            channel = np.abs(np.asarray(value, np.float32)).reshape(-1, value.shape[-1]).max(axis=0)
            peak[name] = np.maximum(peak[name], channel) if name in peak else channel
    return peak


def smooth(model: Any, consumers: dict[str, list[Any]], peaks: dict[str, np.ndarray], alpha: float) -> int:
    """Divide each input's channels by s and scale the weight rows that read them by s (in place); returns
    how many inputs got a Mul. Weights get their own copy, so a weight shared with another node is untouched."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    position = {id(n): i for i, n in enumerate(graph.node)}
    inserts: list[tuple[int, Any]] = []
    for tensor, nodes in consumers.items():
        weights = [numpy_helper.to_array(initializers[n.input[1]]) for n in nodes]
        w_peak = np.max([np.abs(w).max(axis=0 if _transposed(n) else 1) for n, w in zip(nodes, weights, strict=True)],
                        axis=0)
        x_peak = peaks[tensor]
        scale = np.where((x_peak > 0) & (w_peak > 0),
                         np.power(np.maximum(x_peak, 1e-5), alpha) / np.power(np.maximum(w_peak, 1e-5), 1 - alpha),
                         1.0).astype(np.float32)
        for node, w in zip(nodes, weights, strict=True):
            name = f"{node.input[1]}{SMOOTH_SUFFIX}_{node.name or position[id(node)]}"
            scaled = w * (scale[None, :] if _transposed(node) else scale[:, None])
            graph.initializer.append(numpy_helper.from_array(scaled.astype(np.float32), name))
            node.input[1] = name
        inverse, smoothed = f"{tensor}{SMOOTH_SUFFIX}_inverse", f"{tensor}{SMOOTH_SUFFIX}"
        graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
        for node in nodes:
            node.input[0] = smoothed
        first = min(position[id(n)] for n in nodes)
        inserts.append((first, helper.make_node("Mul", [tensor, inverse], [smoothed], name=f"{tensor}{SMOOTH_SUFFIX}")))
    for index, node in sorted(inserts, key=lambda item: -item[0]):
        graph.node.insert(index, node)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(inserts)


def _rename_fusion_initializers(graph: Any) -> None:
    renamed = {i.name: f"{i.name}_prepared" for i in graph.initializer if i.name.startswith(FUSION_NAMES)}
    for init in graph.initializer:
        init.name = renamed.get(init.name, init.name)
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]


def quantized_summary(path: Path) -> dict[str, Any]:
    """What the quantized graph holds: MatMul/Gemm nodes with quantized inputs, and the op types left float."""
    import onnx

    graph = onnx.load(str(path)).graph
    from_dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    matmuls = [n for n in graph.node if n.op_type in QUANTIZED_OPS]
    quantized = [n.name for n in matmuls if all(i in from_dq for i in n.input[:2])]
    float_ops = sorted({n.op_type for n in graph.node} - {"QuantizeLinear", "DequantizeLinear", *QUANTIZED_OPS})
    return {"matmuls": len(matmuls), "quantized_matmuls": len(quantized), "float_ops": float_ops,
            "matmul_outputs": "float, quantized only where another MatMul reads them"}
