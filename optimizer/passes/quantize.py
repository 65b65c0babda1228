"""Quantization with onnxruntime: dynamic INT8, static INT8 (QDQ) with calibration, FP16, and an
accuracy-aware static INT8 that keeps the most sensitive layers in float."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.hardware import Int8Numerics, int8_numerics
from mcbench.optimizer.passes import PassContext, PassError, register
from mcbench.optimizer.passes.prepare import model_opset, prepared_for_quantization

LIBRARIES = ("onnx", "onnxruntime")  # what the passes' records give the cache key
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
PER_CHANNEL_OPSET = 13  # DequantizeLinear's `axis` (per-channel scales) came in opset 13
QUANTIZABLE_OPS = ("Conv", "MatMul", "Gemm")  # the ops whose weights static QDQ quantizes per channel
Method = Literal["minmax", "entropy", "percentile"]
WeightRange = Literal["host", "full", "reduced"]


def weight_numerics(weight_range: WeightRange) -> Int8Numerics:
    """`host`: what this CPU's INT8 kernels need (optimizer.hardware.int8_numerics); `full` or `reduced`
    (7-bit weights): the user's choice, say for a model built here and deployed on another CPU."""
    if weight_range == "host":
        return int8_numerics()
    return Int8Numerics(weight_range == "reduced", f"{weight_range} weight range: set in the recipe")


@register("quant.int8_dynamic", takes=("onnx",), libraries=LIBRARIES)
def int8_dynamic(artifact: Artifact, ctx: PassContext, out_dir: Path, per_channel: bool = False,
                 weight_range: WeightRange = "host") -> Artifact:
    """Weights INT8 ahead of time (one scale a tensor, or a channel), activations quantized at run time
    (suits MatMul-heavy models). `weight_range`: 7-bit weights where the host's kernels can saturate."""
    q = require("onnxruntime.quantization")
    out_dir = Path(out_dir)
    out = out_dir / "model.int8_dynamic.onnx"
    start = time.perf_counter()
    numerics = weight_numerics(weight_range)
    record: dict[str, Any] = {"pass": "quant.int8_dynamic", "weight_type": "QInt8", "per_channel": per_channel,
                              **numerics.record()}
    source = _prepared(artifact, out_dir, record, ctx)
    try:
        q.quantize_dynamic(str(source), str(out), weight_type=q.QuantType.QInt8, per_channel=per_channel,
                           reduce_range=numerics.reduce_range)
    except Exception as exc:
        raise PassError(f"quant.int8_dynamic: onnxruntime's quantizer refused the graph "
                        f"({type(exc).__name__}: {first_line(exc)}; prepared by {record['prepare']})") from exc
    finally:
        _drop_intermediates(out_dir)
    record["seconds"] = round(time.perf_counter() - start, 3)
    return Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))


def _prepared(artifact: Artifact, out_dir: Path, record: dict[str, Any], ctx: PassContext,
              min_opset: int | None = None) -> Path:
    """The graph ready for a quantizer (prepare.py: weights as initializers, shapes inferred); says what failed."""
    source = prepared_for_quantization(artifact.path, artifact.inputs, out_dir, record, min_opset)
    for failure in record.get("prepare_failed", []):
        ctx.log(f"graph preparation: {failure}")
    return source


def _drop_intermediates(out_dir: Path) -> None:
    for name in ("model.dims.onnx", "model.prepared.onnx"):
        (out_dir / name).unlink(missing_ok=True)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: get_next() -> feeds, None when exhausted."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _static_qdq(source: Path, out: Path, calibration: list[dict[str, np.ndarray]], method: str,
                per_channel: bool, exclude: list[str] | None = None, reduce_range: bool = False) -> None:
    """One quantize_static call: QDQ, UINT8 activations, INT8 weights (7-bit with `reduce_range`), the named
    nodes left in float."""
    q = require("onnxruntime.quantization")
    q.quantize_static(
        str(source), str(out), _Reader(calibration),
        quant_format=q.QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
        activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
        calibrate_method=getattr(q.CalibrationMethod, CALIBRATION_METHODS[method]),
        nodes_to_exclude=exclude or None,
    )


def _static_record(name: str, ctx: PassContext, method: str, per_channel: bool,
                   numerics: Int8Numerics) -> dict[str, Any]:
    assert ctx.calibration is not None
    return {"pass": name, "format": "QDQ", "per_channel": per_channel,
            "calibration": CALIBRATION_METHODS[method], "calibration_samples": len(ctx.calibration),
            "calibration_source": ctx.calibration_source, **numerics.record()}


@register("quant.int8_static", takes=("onnx",), needs=("calibration",), libraries=LIBRARIES)
def int8_static(artifact: Artifact, ctx: PassContext, out_dir: Path, method: Method = "minmax",
                per_channel: bool = True, weight_range: WeightRange = "host") -> Artifact:
    """Static INT8 in QDQ format, calibrated on the context's samples (MinMax, Entropy or Percentile)."""
    out_dir = Path(out_dir)
    out = out_dir / "model.int8_static.onnx"
    start = time.perf_counter()
    numerics = weight_numerics(weight_range)
    record = _static_record("quant.int8_static", ctx, method, per_channel, numerics)
    source = _prepared(artifact, out_dir, record, ctx, PER_CHANNEL_OPSET if per_channel else None)
    if per_channel and model_opset(source) < PER_CHANNEL_OPSET:
        per_channel = record["per_channel"] = False
        record["per_channel_note"] = (f"per tensor: the graph is opset {model_opset(source)} and could not be "
                                      f"converted to {PER_CHANNEL_OPSET} ({record.get('opset_conversion_failed')})")
        ctx.log(f"quant.int8_static: {record['per_channel_note']}")
    try:
        _static_qdq(source, out, ctx.calibration, method, per_channel, reduce_range=numerics.reduce_range)
    except Exception as exc:
        raise PassError(f"quant.int8_static: onnxruntime's quantizer refused the graph "
                        f"({type(exc).__name__}: {first_line(exc)}; prepared by {record['prepare']})") from exc
    finally:
        _drop_intermediates(out_dir)
    record["seconds"] = round(time.perf_counter() - start, 3)
    return Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))


@register("quant.fp16", takes=("onnx",), libraries=LIBRARIES)
def fp16(artifact: Artifact, ctx: PassContext, out_dir: Path) -> Artifact:
    """Weights and activations in FP16, inputs and outputs kept FP32 so the same feeds stay valid.

    Meant for GPU targets (tensor cores); a CPU without native FP16 arithmetic runs it through casts.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    start = time.perf_counter()
    model = onnx.load(str(artifact.path))
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    out = Path(out_dir) / "model.fp16.onnx"
    onnx.save(converted, str(out))
    dtypes = [init.data_type for init in converted.graph.initializer]
    record = {"pass": "quant.fp16", "keep_io_types": True,
              "fp16_initializers": sum(d == onnx.TensorProto.FLOAT16 for d in dtypes),
              "fp32_initializers": sum(d == onnx.TensorProto.FLOAT for d in dtypes),
              "casts": sum(n.op_type == "Cast" for n in converted.graph.node),
              "meant_for": "GPU targets; on a CPU without FP16 arithmetic the runtime computes through casts",
              "seconds": round(time.perf_counter() - start, 3)}
    ctx.log(f"FP16: {record['fp16_initializers']} initializers converted, {record['casts']} casts at the edges")
    return Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))


def quantizable_nodes(model_path: Path) -> list[str]:
    """The names of the Conv / MatMul / Gemm nodes whose weights are constants (what static QDQ quantizes)."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    weights = {i.name for i in graph.initializer}
    return [n.name for n in graph.node
            if n.op_type in QUANTIZABLE_OPS and len(n.input) > 1 and n.input[1] in weights]


def top1_accuracy(model_path: Path, feeds: list[dict[str, np.ndarray]], labels: np.ndarray) -> float:
    """Top-1 accuracy of an ONNX classifier on labelled feeds, with onnxruntime on the CPU."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    correct = 0
    for feed, label in zip(feeds, labels, strict=True):
        logits = session.run(None, feed)[0]
        if logits.ndim != 2 or logits.shape[0] != 1:
            raise PassError(f"accuracy-aware quantization needs a classifier with (1, classes) logits, "
                            f"got an output of shape {list(logits.shape)}")
        correct += int(np.argmax(logits[0]) == int(label))
    return correct / len(labels)


@register("quant.int8_accuracy_aware", takes=("onnx",), needs=("calibration", "validation"),
          libraries=LIBRARIES)
def int8_accuracy_aware(artifact: Artifact, ctx: PassContext, out_dir: Path, max_drop: float = 0.01,
                        method: Method = "minmax", weight_range: WeightRange = "host") -> Artifact:
    """Static INT8 (QDQ, per channel) within an accuracy budget: the most sensitive layers stay in float.

    Sensitivity of a layer is the top-1 drop when that layer alone is quantized. Layers are put
    back in float, most sensitive first, until the drop is within `max_drop` (absolute).
    Accuracy is measured on the context's validation data (held-out, labelled).
    """
    if max_drop < 0:
        raise PassError(f"quant.int8_accuracy_aware: max_drop must be >= 0, got {max_drop}")
    feeds, labels = ctx.validation
    out_dir = Path(out_dir)
    start = time.perf_counter()
    numerics = weight_numerics(weight_range)
    record = _static_record("quant.int8_accuracy_aware", ctx, method, True, numerics)
    record.update({"max_drop": max_drop, "validation_samples": len(labels)})
    source = _prepared(artifact, out_dir, record, ctx, PER_CHANNEL_OPSET)
    fp32 = top1_accuracy(source, feeds, labels)
    out = out_dir / "model.int8_accuracy_aware.onnx"
    trial = out_dir / "model.trial.onnx"

    def accuracy_excluding(exclude: list[str]) -> float:
        _static_qdq(source, out, ctx.calibration, method, True, exclude, numerics.reduce_range)
        return top1_accuracy(out, feeds, labels)

    nodes = quantizable_nodes(source)
    accuracy = accuracy_excluding([])
    attempts = [{"in_float": [], "accuracy": accuracy}]
    sensitivity: dict[str, float] = {}
    in_float: list[str] = []
    if fp32 - accuracy > max_drop:
        for node in nodes:  # one layer quantized at a time: the others excluded
            _static_qdq(source, trial, ctx.calibration, method, True, [n for n in nodes if n != node],
                        numerics.reduce_range)
            sensitivity[node] = round(fp32 - top1_accuracy(trial, feeds, labels), 6)
        trial.unlink(missing_ok=True)
        for node in sorted(nodes, key=lambda n: -sensitivity[n]):
            in_float.append(node)
            accuracy = accuracy_excluding(in_float)
            attempts.append({"in_float": list(in_float), "accuracy": accuracy})
            if fp32 - accuracy <= max_drop:
                break
    _drop_intermediates(out_dir)
    record.update({"fp32_accuracy": fp32, "accuracy": accuracy, "drop": round(fp32 - accuracy, 6),
                   "met_budget": fp32 - accuracy <= max_drop, "quantizable_layers": len(nodes),
                   "layers_in_float": in_float, "sensitivity": sensitivity, "attempts": attempts,
                   "seconds": round(time.perf_counter() - start, 3)})
    if nodes and len(in_float) == len(nodes):
        record["note"] = "every quantizable layer stayed in float: within the budget only as an FP32 model"
        ctx.log(f"quant.int8_accuracy_aware: {record['note']}")
    ctx.log(f"accuracy-aware INT8: FP32 {fp32:.4f}, INT8 {accuracy:.4f} with {len(in_float)} of "
            f"{len(nodes)} layers in float ({', '.join(in_float) or 'none'})")
    return Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))
