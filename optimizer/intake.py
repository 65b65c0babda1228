"""Model intake: read a user's ONNX file safely and resolve its input specs."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcbench.optimizer.artifact import FLOAT_DTYPES, INT_DTYPES, Artifact, InputSpec
from mcbench.optimizer.errors import first_line
from mcbench.optimizer.targets import require
from mcbench.reports.errors import UserError

# ONNX TensorProto element types -> numpy dtype names mcbench can generate inputs for
_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 3: "int8", 2: "uint8", 9: "bool"}


class IntakeError(UserError, ValueError):
    """A model or its input description that mcbench cannot take; the message names the file and the problem."""


@dataclass(frozen=True)
class InputOverride:
    """What `--input NAME=D1,D2[:DTYPE[:LOW-HIGH]]` says of one input; unset parts come from the model."""

    shape: tuple[int, ...]
    dtype: str | None = None
    low: int | None = None
    high: int | None = None


INPUT_SYNTAX = "NAME=D1,D2,...[:DTYPE[:LOW-HIGH]] with positive integer dimensions"


def parse_inputs(items: list[str]) -> dict[str, InputOverride]:
    """`["ids=1,128:int64:0-30522"]` -> `{"ids": InputOverride((1, 128), "int64", 0, 30522)}`."""
    overrides: dict[str, InputOverride] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        dims, _, tail = rest.partition(":")
        dtype, _, bounds = tail.partition(":")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d <= 0 for d in shape):
            raise IntakeError(f"--input {item!r}: expected {INPUT_SYNTAX}")
        low, high = _range(item, bounds)
        if low is not None and high is not None and low >= high:
            raise IntakeError(f"--input {item!r}: the range {low}-{high} is empty (LOW must be below HIGH)")
        _check_size(item, shape, dtype)
        if dtype and dtype not in FLOAT_DTYPES + INT_DTYPES:
            known = ", ".join(FLOAT_DTYPES + INT_DTYPES)
            raise IntakeError(f"--input {item!r}: dtype {dtype!r} is not one of {known}")
        overrides[name] = InputOverride(shape, dtype or None, low, high)
    return overrides


_RANGE = re.compile(r"\s*(-?[0-9]{1,19})\s*-\s*(-?[0-9]{1,19})\s*")  # -128-127, -10--1, 0-255


def _range(item: str, bounds: str) -> tuple[int | None, int | None]:
    """LOW-HIGH of `--input NAME=DIMS:DTYPE:LOW-HIGH`, either one negative; (None, None) where none is given."""
    if not bounds:
        return None, None
    match = _RANGE.fullmatch(bounds)
    if match is None:
        raise IntakeError(f"--input {short_text(item)}: the range {short_text(bounds)} is not LOW-HIGH in whole "
                          "numbers (e.g. 0-255, -128-127 or -10--1)")
    return int(match[1]), int(match[2])


MAX_INPUT_ELEMENTS_ENV = "MCBENCH_MAX_INPUT_ELEMENTS"
MAX_INPUT_ELEMENTS = 2**26  # per input; 256 MiB of float32. Larger inputs need the environment variable above.


def max_input_elements() -> int:
    """The largest input, in elements, that an --input shape may ask for (docs/reliability-and-security.md, Limits)."""
    text = os.environ.get(MAX_INPUT_ELEMENTS_ENV, "")
    return int(text) if text.isdigit() and len(text) < 19 else MAX_INPUT_ELEMENTS


def _check_size(item: str, shape: tuple[int, ...], dtype: str) -> None:
    """Refuse a shape past the element limit before anything is allocated for it."""
    elements, limit = math.prod(shape), max_input_elements()
    if elements > limit:
        itemsize = np.dtype(dtype).itemsize if dtype in FLOAT_DTYPES + INT_DTYPES else 4
        raise IntakeError(f"--input {short_text(item)}: {elements} elements ({elements * itemsize} bytes) is over the "
                          f"limit of {limit} elements per input (set {MAX_INPUT_ELEMENTS_ENV} to raise it)")


def short_text(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def load_onnx(path: Path, inputs: dict[str, InputOverride] | None = None) -> Artifact:
    """Check the file, confine external data to its folder, and return an artifact with static input specs."""
    path = Path(path)
    inputs = inputs or {}
    onnx = require("onnx")
    model = checked_onnx(path)
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise IntakeError(f"cannot load {path}: ONNX checker failed: {first_line(exc)}") from exc
    initializers = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    if not graph_inputs:
        raise IntakeError(f"cannot load {path}: the model has no inputs")
    unknown = sorted(set(inputs) - {i.name for i in graph_inputs})
    if unknown:
        names = ", ".join(i.name for i in graph_inputs)
        raise IntakeError(
            f"cannot load {path}: --input names {', '.join(unknown)} not among the model's inputs ({names})"
        )
    specs = tuple(_input_spec(path, i, inputs.get(i.name)) for i in graph_inputs)
    return Artifact(path, "onnx", specs)


def checked_onnx(path: Path):
    """The ONNX graph (external data not loaded), after the intake checks every path that loads a model goes through:
    a non-empty readable file whose external data all resolve inside its folder."""
    path = Path(path)
    if not path.is_file():
        raise IntakeError(f"cannot load {path}: no such file")
    if path.stat().st_size == 0:
        raise IntakeError(f"cannot load {path}: the file is empty")
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise IntakeError(f"cannot load {path}: not a readable ONNX model ({first_line(exc)})") from exc
    _check_external_data(onnx, model, path)
    return model


def _input_spec(path: Path, value_info, override: InputOverride | None) -> InputSpec:
    tensor = value_info.type.tensor_type
    dtype = _ONNX_DTYPES.get(tensor.elem_type)
    if dtype is None:
        raise IntakeError(
            f"cannot load {path}: input {value_info.name!r} has an unsupported element type {tensor.elem_type}"
        )
    name = value_info.name
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    if override is not None:
        if override.dtype and override.dtype != dtype:
            raise IntakeError(f"cannot load {path}: --input {name} says {override.dtype}, the model takes {dtype}")
        if len(override.shape) != len(dims):
            raise IntakeError(
                f"cannot load {path}: --input {name} has {len(override.shape)} dimensions, the model has {len(dims)}"
            )
        for i, (given, declared) in enumerate(zip(override.shape, dims, strict=True)):
            if isinstance(declared, int) and declared > 0 and declared != given:
                raise IntakeError(
                    f"cannot load {path}: --input {name} dimension {i} is {given}, the model fixes it at {declared}"
                )
        return override_spec(name, override, dtype)
    unresolved = [f"{i} ({d})" for i, d in enumerate(dims) if not isinstance(d, int) or d <= 0]
    if unresolved:
        raise IntakeError(
            f"cannot load {path}: input {name!r} has unresolved dimensions {', '.join(unresolved)}; "
            f"give them with --input {name}=" + ",".join(str(d) if isinstance(d, int) and d > 0 else "N" for d in dims)
        )
    return InputSpec(name, tuple(dims), dtype)


def override_spec(name: str, override: InputOverride, dtype: str) -> InputSpec:
    """The input spec an --input override gives, integer range included (default [0, 100))."""
    low = 0 if override.low is None else override.low
    high = 100 if override.high is None else override.high
    return InputSpec(name, override.shape, override.dtype or dtype, low, high)


def _check_external_data(onnx, model, path: Path) -> None:
    """Every external-data location must resolve inside the model's folder (no absolute paths, no `..`)."""
    folder = path.resolve().parent
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if "\x00" in location:
            raise IntakeError(f"cannot load {path}: external data {short_text(location)} points outside the model "
                              "folder (a NUL byte in its name)")
        target = (folder / location).resolve()
        if os.path.isabs(location) or ".." in Path(location).parts or not target.is_relative_to(folder):
            raise IntakeError(f"cannot load {path}: external data {location!r} points outside the model folder")
        if not target.is_file():
            raise IntakeError(f"cannot load {path}: external data file {location!r} is missing")
