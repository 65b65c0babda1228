"""INT8 quantization with onnxruntime.quantization: dynamic, and static QDQ with calibration."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.artifact import Artifact
from optimizer.errors import first_line
from optimizer.passes import PassContext, PassError, register
from optimizer.targets import require


def _needs_onnx(artifact: Artifact, name: str) -> None:
    if artifact.format != "onnx":
        raise PassError(f"{name} needs an ONNX model; put export.onnx before it in the recipe")


@register("quant.int8_dynamic")
def int8_dynamic(artifact: Artifact, ctx: PassContext, out_dir: Path) -> Artifact:
    """Weights INT8 ahead of time, activations quantized at run time (suits MatMul-heavy models)."""
    _needs_onnx(artifact, "quant.int8_dynamic")
    q = require("onnxruntime.quantization")
    out_dir = Path(out_dir)
    out = out_dir / "model.int8_dynamic.onnx"
    start = time.perf_counter()
    record: dict[str, Any] = {"pass": "quant.int8_dynamic", "weight_type": "QInt8"}
    source = _preprocessed(artifact.path, out_dir / "model.preprocessed.onnx", record, ctx)
    q.quantize_dynamic(str(source), str(out), weight_type=q.QuantType.QInt8, per_channel=False)
    (out_dir / "model.preprocessed.onnx").unlink(missing_ok=True)
    record["seconds"] = round(time.perf_counter() - start, 3)
    return Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))


def _preprocessed(model: Path, out: Path, record: dict[str, Any], ctx: PassContext) -> Path:
    """onnxruntime's recommended pre-processing (shape inference, graph optimization) before quantizing.

    Symbolic shape inference fails on some graphs; then the plain model is quantized and the record says so.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(model), str(out), skip_symbolic_shape=False)
    except Exception as exc:
        record["pre_process"] = f"skipped ({type(exc).__name__}: {first_line(exc)})"
        ctx.log(f"quant_pre_process failed, quantizing without it: {record['pre_process']}")
        return model
    record["pre_process"] = "quant_pre_process"
    return out


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: get_next() -> feeds, None when exhausted."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


@register("quant.int8_static")
def int8_static(artifact: Artifact, ctx: PassContext, out_dir: Path) -> Artifact:
    """Static INT8 in QDQ format, per-channel weights, MinMax calibration on the context's samples."""
    _needs_onnx(artifact, "quant.int8_static")
    if not ctx.calibration:
        raise PassError("quant.int8_static needs calibration data and none was given")
    q = require("onnxruntime.quantization")
    out_dir = Path(out_dir)
    prepped = out_dir / "model.preprocessed.onnx"
    out = out_dir / "model.int8_static.onnx"
    start = time.perf_counter()
    record: dict[str, Any] = {"pass": "quant.int8_static", "format": "QDQ", "per_channel": True,
                              "calibration": "MinMax", "calibration_samples": len(ctx.calibration),
                              "calibration_source": ctx.calibration_source}
    source = _preprocessed(artifact.path, prepped, record, ctx)
    q.quantize_static(
        str(source), str(out), _Reader(ctx.calibration),
        quant_format=q.QuantFormat.QDQ, per_channel=True,
        activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax,
    )
    prepped.unlink(missing_ok=True)
    record["seconds"] = round(time.perf_counter() - start, 3)
    return Artifact(out, "onnx", artifact.inputs, passes=artifact.passes + (record,))
