"""Model intake: read a user's ONNX file safely and resolve its input specs."""

from __future__ import annotations

import os
from pathlib import Path

from optimizer.artifact import Artifact, InputSpec
from optimizer.targets import require

# ONNX TensorProto element types -> numpy dtype names mcbench can generate inputs for
_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 3: "int8", 2: "uint8", 9: "bool"}


class IntakeError(ValueError):
    """A model or its input description that mcbench cannot take; the message names the file and the problem."""


def parse_input_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """`["image=1,3,224,224"]` -> `{"image": (1, 3, 224, 224)}`."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d <= 0 for d in shape):
            raise IntakeError(f"--input {item!r}: expected NAME=D1,D2,... with positive integer dimensions")
        shapes[name] = shape
    return shapes


def load_onnx(path: Path, shapes: dict[str, tuple[int, ...]] | None = None) -> Artifact:
    """Check the file, confine external data to its folder, and return an artifact with static input specs."""
    path = Path(path)
    shapes = shapes or {}
    if not path.is_file():
        raise IntakeError(f"cannot load {path}: no such file")
    if path.stat().st_size == 0:
        raise IntakeError(f"cannot load {path}: the file is empty")
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise IntakeError(f"cannot load {path}: not a readable ONNX model ({_first_line(exc)})") from exc
    _check_external_data(onnx, model, path)
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise IntakeError(f"cannot load {path}: ONNX checker failed: {_first_line(exc)}") from exc
    initializers = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    if not graph_inputs:
        raise IntakeError(f"cannot load {path}: the model has no inputs")
    unknown = sorted(set(shapes) - {i.name for i in graph_inputs})
    if unknown:
        names = ", ".join(i.name for i in graph_inputs)
        raise IntakeError(
            f"cannot load {path}: --input names {', '.join(unknown)} not among the model's inputs ({names})"
        )
    specs = tuple(_input_spec(path, i, shapes.get(i.name)) for i in graph_inputs)
    return Artifact(path, "onnx", specs)


def _input_spec(path: Path, value_info, override: tuple[int, ...] | None) -> InputSpec:
    tensor = value_info.type.tensor_type
    dtype = _ONNX_DTYPES.get(tensor.elem_type)
    if dtype is None:
        raise IntakeError(
            f"cannot load {path}: input {value_info.name!r} has an unsupported element type {tensor.elem_type}"
        )
    name = value_info.name
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    if override is not None:
        if len(override) != len(dims):
            raise IntakeError(
                f"cannot load {path}: --input {name} has {len(override)} dimensions, the model has {len(dims)}"
            )
        for i, (given, declared) in enumerate(zip(override, dims, strict=True)):
            if isinstance(declared, int) and declared > 0 and declared != given:
                raise IntakeError(
                    f"cannot load {path}: --input {name} dimension {i} is {given}, the model fixes it at {declared}"
                )
        return InputSpec(value_info.name, override, dtype)
    unresolved = [f"{i} ({d})" for i, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
    if unresolved:
        raise IntakeError(
            f"cannot load {path}: input {name!r} has unresolved dimensions {', '.join(unresolved)}; "
            f"give them with --input {name}=" + ",".join(str(d) if isinstance(d, int) and d > 0 else "N" for d in dims)
        )
    return InputSpec(value_info.name, tuple(dims), dtype)


def _check_external_data(onnx, model, path: Path) -> None:
    """Every external-data location must resolve inside the model's folder (no absolute paths, no `..`)."""
    folder = path.resolve().parent
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if os.path.isabs(location) or ".." in Path(location).parts or not target.is_relative_to(folder):
            raise IntakeError(f"cannot load {path}: external data {location!r} points outside the model folder")
        if not target.is_file():
            raise IntakeError(f"cannot load {path}: external data file {location!r} is missing")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
