"""Variants: a recipe (a chain of passes) compiled for a target runtime."""

from __future__ import annotations

from dataclasses import dataclass

from optimizer.targets import Target


@dataclass(frozen=True)
class VariantSpec:
    name: str
    recipe: tuple[str, ...]
    target: Target
    baseline: bool = False


def default_variants(from_torch: bool) -> list[VariantSpec]:
    """The 0.1 matrix: the FP32 baseline, ORT FP32 / INT8 dynamic / INT8 static (QDQ), OpenVINO FP32.

    A model that comes from PyTorch is measured in eager mode as the baseline; an ONNX file's
    baseline is onnxruntime FP32.
    """
    variants = []
    if from_torch:
        variants.append(VariantSpec("torch-fp32", (), Target("torch"), baseline=True))
    variants += [
        VariantSpec("ort-fp32", ("export.onnx",), Target("onnxruntime"), baseline=not from_torch),
        VariantSpec("ort-int8-dynamic", ("export.onnx", "quant.int8_dynamic"), Target("onnxruntime")),
        VariantSpec("ort-int8-static", ("export.onnx", "quant.int8_static"), Target("onnxruntime")),
        VariantSpec("ov-fp32", ("export.onnx",), Target("openvino", options={"hint": "LATENCY", "precision": "f32"})),
    ]
    return variants
