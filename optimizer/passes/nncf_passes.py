"""OpenVINO / NNCF passes: INT8 post-training quantization, weight compression, accuracy control.

Each reads the ONNX model into OpenVINO, compresses it with NNCF and writes an IR (.xml + .bin):
the result runs on the openvino runtime only.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.hardware import Int8Numerics
from mcbench.optimizer.passes import PassContext, PassError, register
from mcbench.optimizer.passes.quantize import WeightRange, weight_numerics

LIBRARIES = ("nncf", "openvino", "onnx")  # what the passes' records give the cache key
PRESETS = {"performance": "PERFORMANCE", "mixed": "MIXED"}
WEIGHT_MODES = {"int8": "INT8_ASYM", "int8_sym": "INT8_SYM", "int4": "INT4_SYM", "int4_asym": "INT4_ASYM"}
WEIGHT_LAYERS = ("MatMul", "Convolution", "GroupConvolution")  # ops whose constant weights NNCF may compress
Preset = Literal["performance", "mixed"]
ModelKind = Literal["auto", "cnn", "transformer"]
ATTENTION_OPS = ("Softmax",)  # a graph with attention is quantized with NNCF's transformer scheme
WeightMode = Literal["int8", "int8_sym", "int4", "int4_asym"]


def _read_onnx(artifact: Artifact) -> Any:
    """The ONNX model as OpenVINO reads it; a graph it cannot convert (a Conv in an If branch) is a PassError."""
    ov = require("openvino")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    try:
        return ov.Core().read_model(str(artifact.path))
    except Exception as exc:
        raise PassError(f"OpenVINO cannot read {artifact.path.name}: {type(exc).__name__}: {first_line(exc)}") from exc


def _save(model: Any, out_dir: Path, stem: str) -> Path:
    """Write the IR without FP16 weight compression, so the weights are what NNCF made of them."""
    ov = require("openvino")
    out = Path(out_dir) / f"{stem}.xml"
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def _dataset(samples: list[dict[str, np.ndarray]]) -> Any:
    return require("nncf").Dataset(samples)


PASS_THROUGH = ("Convert", "Reshape", "Transpose", "Multiply", "Subtract", "MaxPool", "Squeeze", "Unsqueeze")
INTEGER_TYPES = ("i8", "u8", "i4", "u4")


def _origin(node: Any, depth: int = 6) -> Any:
    """The op a value comes from once converts, reshapes and (de)quantization arithmetic are looked through."""
    while depth and node.get_type_name() in PASS_THROUGH and node.get_input_size():
        node, depth = node.input_value(0).get_node(), depth - 1
    return node


def _weight_layers(model: Any) -> list[Any]:
    return [op for op in model.get_ops() if op.get_type_name() in WEIGHT_LAYERS
            and op.get_input_size() > 1 and _origin(op.input_value(1).get_node()).get_type_name()
            in ("Constant", "FakeQuantize")]


def weight_dtypes(model: Any) -> dict[str, int]:
    """How many Convolution / MatMul weights are stored in each element type (f32, f16, u8, i4 ...)."""
    counts: Counter[str] = Counter()
    for op in _weight_layers(model):
        origin = _origin(op.input_value(1).get_node())
        if origin.get_type_name() == "FakeQuantize":
            origin = _origin(origin.input_value(0).get_node())
        counts[origin.get_output_element_type(0).get_type_name()] += 1
    return dict(sorted(counts.items()))


def float_layers(model: Any) -> list[str]:
    """Convolution / MatMul layers with neither a FakeQuantize input nor integer weights: what stayed in float."""
    out = []
    for op in _weight_layers(model):
        origins = [_origin(op.input_value(i).get_node()) for i in range(2)]
        quantized = any(o.get_type_name() == "FakeQuantize" for o in origins) or (
            origins[1].get_type_name() == "Constant" and origins[1].get_output_element_type(0).get_type_name()
            in INTEGER_TYPES)
        if not quantized:
            out.append(op.get_friendly_name())
    return out


def model_type_args(model: Any, kind: str) -> tuple[str, dict[str, Any]]:
    """The kind used and NNCF's `model_type` argument for it.

    NNCF asks for `ModelType.TRANSFORMER` on attention models (it keeps Softmax/LayerNorm paths in float
    and handles embeddings as weights); without it, quantizer propagation fails on a BERT-like graph
    with a KeyError on the embedding node. "auto" picks it when the graph has a Softmax.
    """
    if kind == "auto":
        kind = "transformer" if any(op.get_type_name() in ATTENTION_OPS for op in model.get_ops()) else "cnn"
    nncf = require("nncf")
    return kind, ({"model_type": nncf.ModelType.TRANSFORMER} if kind == "transformer" else {})


def overflow_args(numerics: Int8Numerics) -> dict[str, Any]:
    """NNCF's overflow fix (half-range weights) where the host's INT8 kernels can saturate, off where they
    cannot (NNCF's default applies it to the first layer only, whatever the CPU)."""
    nncf = require("nncf")
    fix = nncf.OverflowFix.ENABLE if numerics.reduce_range else nncf.OverflowFix.DISABLE
    return {"advanced_parameters": nncf.AdvancedQuantizationParameters(overflow_fix=fix)}


@register("nncf.int8", takes=("onnx",), makes="openvino", needs=("calibration",), libraries=LIBRARIES)
def int8(artifact: Artifact, ctx: PassContext, out_dir: Path, preset: Preset = "performance",
         subset_size: int = 300, model_type: ModelKind = "auto", weight_range: WeightRange = "host") -> Artifact:
    """NNCF post-training INT8 quantization (FakeQuantize in the IR), calibrated on the context's samples."""
    if subset_size < 1:
        raise PassError(f"nncf.int8: subset_size must be at least 1, got {subset_size}")
    model = _read_onnx(artifact)
    nncf = require("nncf")
    start = time.perf_counter()
    kind, type_args = model_type_args(model, model_type)
    numerics = weight_numerics(weight_range)
    try:
        quantized = nncf.quantize(model, _dataset(ctx.calibration), subset_size=subset_size,
                                  preset=getattr(nncf.QuantizationPreset, PRESETS[preset]), **type_args,
                                  **overflow_args(numerics))
    except Exception as exc:
        raise PassError(f"nncf.quantize failed: {type(exc).__name__}: {first_line(exc)}") from exc
    out = _save(quantized, out_dir, "model.nncf_int8")
    record = {"pass": "nncf.int8", "preset": preset, "subset_size": subset_size, "model_type": kind,
              **numerics.record(),
              "calibration_samples": min(subset_size, len(ctx.calibration)),
              "calibration_source": ctx.calibration_source,
              "fake_quantize": sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops()),
              "layers_in_float": float_layers(quantized),
              "seconds": round(time.perf_counter() - start, 3)}
    return Artifact(out, "openvino", artifact.inputs, passes=artifact.passes + (record,))


@register("nncf.weight_compression", takes=("onnx",), makes="openvino", libraries=LIBRARIES)
def weight_compression(artifact: Artifact, ctx: PassContext, out_dir: Path, mode: WeightMode = "int8") -> Artifact:
    """Weights stored in INT8 or INT4 and decompressed at run time; activations stay float.

    This shrinks the model and helps models dominated by large linear layers, whose MatMuls are
    bound by memory traffic (LLM-style); the arithmetic stays float, so a compute-bound CNN gets a
    smaller file, not a faster one. The record counts the weights per storage type before and
    after (INT4 keeps some layers, such as the first and last, in INT8).
    """
    model = _read_onnx(artifact)
    nncf = require("nncf")
    before = weight_dtypes(model)
    start = time.perf_counter()
    try:
        compressed = nncf.compress_weights(model, mode=getattr(nncf.CompressWeightsMode, WEIGHT_MODES[mode]))
    except Exception as exc:
        raise PassError(f"nncf.compress_weights({mode}) failed: {type(exc).__name__}: {first_line(exc)}") from exc
    after = weight_dtypes(compressed)
    out = _save(compressed, out_dir, f"model.nncf_weights_{mode}")
    compressed_count = sum(v for k, v in after.items() if k in INTEGER_TYPES)
    record = {"pass": "nncf.weight_compression", "mode": mode, "nncf_mode": WEIGHT_MODES[mode],
              "weight_dtypes_before": before, "weight_dtypes_after": after,
              "compressed_weights": compressed_count,
              "seconds": round(time.perf_counter() - start, 3)}
    convs = sum(op.get_type_name() in ("Convolution", "GroupConvolution") for op in _weight_layers(model))
    if convs:
        record["note"] = (f"{convs} of {sum(before.values())} weight layers are convolutions: weight compression "
                          "makes their storage smaller, their arithmetic stays float (no INT8 kernels)")
    ctx.log(f"weight compression {mode}: weights {before} -> {after}")
    return Artifact(out, "openvino", artifact.inputs, passes=artifact.passes + (record,))


def _validation_fn(labels: np.ndarray):
    """NNCF's validation function: top-1 accuracy of a compiled model over the validation items, in order."""
    def validate(compiled: Any, items: Any) -> float:
        correct, total = 0, 0
        for feed, label in zip(items, labels, strict=False):
            logits = next(iter(compiled(feed).values()))
            correct += int(np.argmax(logits[0]) == int(label))
            total += 1
        return correct / max(total, 1)

    return validate


@register("nncf.int8_accuracy_aware", takes=("onnx",), makes="openvino", needs=("calibration", "validation"),
          libraries=LIBRARIES)
def int8_accuracy_aware(artifact: Artifact, ctx: PassContext, out_dir: Path, max_drop: float = 0.01,
                        subset_size: int = 300, model_type: ModelKind = "auto",
                        weight_range: WeightRange = "host") -> Artifact:
    """NNCF's quantize_with_accuracy_control: INT8, then layers reverted to float until the drop fits max_drop."""
    model = _read_onnx(artifact)
    nncf = require("nncf")
    feeds, labels = ctx.validation
    start = time.perf_counter()
    validate = _validation_fn(labels)
    kind, type_args = model_type_args(model, model_type)
    numerics = weight_numerics(weight_range)
    try:
        quantized = nncf.quantize_with_accuracy_control(
            model, _dataset(ctx.calibration), _dataset(feeds), validate,
            max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=subset_size, **type_args,
            advanced_quantization_parameters=overflow_args(numerics)["advanced_parameters"])
    except Exception as exc:
        raise PassError(f"nncf.quantize_with_accuracy_control failed: {type(exc).__name__}: "
                        f"{first_line(exc)}") from exc
    ov = require("openvino")
    core = ov.Core()
    fp32 = validate(core.compile_model(model, "CPU"), feeds)
    accuracy = validate(core.compile_model(quantized, "CPU"), feeds)
    out = _save(quantized, out_dir, "model.nncf_int8_aa")
    record = {"pass": "nncf.int8_accuracy_aware", "max_drop": max_drop, "subset_size": subset_size, "model_type": kind,
              **numerics.record(),
              "calibration_source": ctx.calibration_source, "validation_samples": len(labels),
              "fp32_accuracy": fp32, "accuracy": accuracy, "drop": round(fp32 - accuracy, 6),
              "met_budget": fp32 - accuracy <= max_drop, "layers_in_float": float_layers(quantized),
              "seconds": round(time.perf_counter() - start, 3)}
    return Artifact(out, "openvino", artifact.inputs, passes=artifact.passes + (record,))
