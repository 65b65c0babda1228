"""Prepare a graph for onnxruntime's quantizers: weights as initializers, shapes inferred.

Real exported graphs break the quantizers in three ways: weights that come out of Constant nodes (a
Paddle export: `Expected conv2d_157.w_0 to be an initializer`), symbolic dims the shape inference cannot
resolve (`Incomplete symbolic shape inference`), and exporter patterns symbolic inference trips on
(`TypeError: object of type 'NoneType' has no len()`, an assertion on a Concat). Preparation goes down a
ladder and keeps the first rung that works, recording which and why the ones above it failed:

1. onnxruntime's `quant_pre_process`: symbolic shape inference, then onnxruntime's basic (portable)
   graph optimisation, which folds constants (Constant nodes become initializers), then ONNX shape
   inference;
2. the same without symbolic shape inference;
3. onnxruntime's basic graph optimisation alone (an InferenceSession saving its optimised graph);
4. the graph as it is.

Before any of it, the inputs' symbolic dims other than the batch take the values mcbench resolved from
`--input` (the batch stays open, so the server may still batch the variant).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import InputSpec


def prepared_for_quantization(model: Path, inputs: tuple[InputSpec, ...], out_dir: Path,
                              record: dict[str, Any], min_opset: int | None = None) -> Path:
    """The prepared model's path (in `out_dir`); `record["prepare"]` says which rung ran, `record[
    "prepare_failed"]` why the rungs above it did not. `min_opset`: convert an older graph up to it first
    (per-channel QDQ needs DequantizeLinear's `axis`, opset 13); `record["opset_from"]` says it happened."""
    fixed = with_resolved_dims(model, inputs, out_dir / "model.dims.onnx")
    if min_opset is not None:
        fixed = with_opset_at_least(fixed, min_opset, out_dir / "model.dims.onnx", record)
    failures: list[str] = []
    for name, rung in (("symbolic shape inference + basic optimisation", _pre_process_symbolic),
                       ("basic optimisation + ONNX shape inference", _pre_process_plain),
                       ("basic optimisation", _ort_basic)):
        out = out_dir / "model.prepared.onnx"
        try:
            rung(fixed, out)
        except Exception as exc:  # the quantization tools raise anything from AssertionError to TypeError
            failures.append(f"{name}: {type(exc).__name__}: {first_line(exc) or 'no message'}")
            out.unlink(missing_ok=True)
            continue
        record["prepare"] = name
        if failures:
            record["prepare_failed"] = failures
        return out
    record["prepare"] = "none: the graph is quantized as it is"
    record["prepare_failed"] = failures
    return fixed


def with_resolved_dims(model: Path, inputs: tuple[InputSpec, ...], out: Path) -> Path:
    """A copy whose graph inputs carry the resolved dims where they were symbolic (but the first)."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    specs = {s.name: s for s in inputs}
    changed = False
    for graph_input in proto.graph.input:
        spec = specs.get(graph_input.name)
        dims = graph_input.type.tensor_type.shape.dim
        if spec is None or len(dims) != len(spec.shape):
            continue
        for position, (dim, value) in enumerate(zip(dims, spec.shape, strict=True)):
            if position > 0 and (dim.dim_param or dim.dim_value <= 0):
                dim.Clear()
                dim.dim_value = value
                changed = True
    if not changed:
        return model
    onnx.save(proto, str(out))
    return out


def with_opset_at_least(model: Path, opset: int, out: Path, record: dict[str, Any]) -> Path:
    """The graph converted to `opset` where its default-domain opset is older (onnx's version converter)."""
    import onnx
    from onnx import version_converter

    proto = onnx.load(str(model))
    current = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return model
    try:
        converted = version_converter.convert_version(proto, opset)
    except Exception as exc:
        record["opset_conversion_failed"] = f"{current} -> {opset}: {type(exc).__name__}: {first_line(exc)}"
        return model
    onnx.save(converted, str(out))
    record["opset_from"] = current
    return out


def model_opset(model: Path) -> int:
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _pre_process_symbolic(model: Path, out: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, out = model.resolve(), out.resolve()  # absolute: the call runs in another working folder
    with _quiet(), _working_folder(out.parent / "symbolic"):
        quant_pre_process(str(model), str(out), skip_symbolic_shape=False, auto_merge=True, guess_output_rank=True)


@contextlib.contextmanager
def _working_folder(folder: Path) -> Iterator[None]:
    """Run in `folder` (made, and removed after): onnxruntime's symbolic shape inference saves the model it could
    not finish as `sym_shape_infer_temp.onnx` in the working directory before it raises, which was the user's."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
        shutil.rmtree(folder, ignore_errors=True)


def _pre_process_plain(model: Path, out: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet():
        quant_pre_process(str(model), str(out), skip_symbolic_shape=True)


def _ort_basic(model: Path, out: Path) -> None:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # portable rewrites only
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


class _quiet:
    """The shape tools log a warning a node: they go to the run's log at most, not once a node."""

    def __enter__(self) -> None:
        self._level = logging.root.manager.disable
        logging.disable(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        logging.disable(self._level)
