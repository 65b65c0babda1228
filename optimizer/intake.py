"""Model intake: read a user's ONNX file safely and resolve its input specs."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mcbench.base.errors import UserError
from mcbench.base.imports import require
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import FLOAT_DTYPES, INT_DTYPES, Artifact, InputSpec

# ONNX TensorProto element types -> numpy dtype names mcbench can generate inputs for
_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 3: "int8", 2: "uint8", 9: "bool"}


class IntakeError(UserError):
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


@dataclass(frozen=True)
class InputConstant:
    """What `--const NAME=VALUE[:DTYPE]` says of one input: every inference gets it filled with `value`."""

    value: float | int | bool
    dtype: str | None = None


CONST_SYNTAX = "NAME=VALUE[:DTYPE], VALUE a number or true/false"


def parse_constants(items: list[str]) -> dict[str, InputConstant]:
    """`["sr=16000:int64"]` -> `{"sr": InputConstant(16000, "int64")}`; the dtype is checked against the model later."""
    constants: dict[str, InputConstant] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        text, _, dtype = rest.partition(":")
        value = _constant_value(text.strip())
        if not sep or not name or value is None:
            raise IntakeError(f"--const {short_text(item)}: expected {CONST_SYNTAX}")
        if dtype and dtype not in FLOAT_DTYPES + INT_DTYPES:
            raise IntakeError(f"--const {short_text(item)}: dtype {dtype!r} is not one of "
                              f"{', '.join(FLOAT_DTYPES + INT_DTYPES)}")
        constants[name] = InputConstant(value, dtype or None)
    return constants


def _constant_value(text: str) -> float | int | bool | None:
    """An integer, a finite float, true or false; None for anything else."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def with_constants(artifact: Artifact, constants: dict[str, InputConstant], source: str = "--const") -> Artifact:
    """The artifact with each named input's value fixed; IntakeError for a name, dtype or value the model refuses."""
    return replace(artifact, inputs=constant_specs(artifact.inputs, constants, source))


def constant_specs(specs: tuple[InputSpec, ...], constants: dict[str, InputConstant],
                   source: str = "--const") -> tuple[InputSpec, ...]:
    """The specs with each named input's value fixed (with_constants, for inputs known without a model file)."""
    names = [s.name for s in specs]
    unknown = sorted(set(constants) - set(names))
    if unknown:
        raise IntakeError(f"{source} names {', '.join(unknown)}, not among the model's inputs ({', '.join(names)})")
    return tuple(s if s.name not in constants else replace(s, value=_fitted(s, constants[s.name], source))
                 for s in specs)


def _fitted(spec: InputSpec, constant: InputConstant, source: str) -> float | int | bool:
    """The constant as a value of the input's dtype, or IntakeError where it is not one."""
    value, where = constant.value, f"{source} {spec.name}={constant.value!r}"
    if constant.dtype and constant.dtype != spec.dtype:
        raise IntakeError(f"{where}: says {constant.dtype}, the model takes {spec.dtype}")
    if spec.dtype == "bool":
        if value not in (0, 1):
            raise IntakeError(f"{where}: the input is bool; give true or false")
        return bool(value)
    if spec.dtype in FLOAT_DTYPES:
        return float(value)
    if isinstance(value, float) and not value.is_integer():
        raise IntakeError(f"{where}: the input is {spec.dtype}; give an integer")
    info = np.iinfo(spec.dtype)
    if not info.min <= int(value) <= info.max:
        raise IntakeError(f"{where}: out of {spec.dtype}'s range [{info.min}, {info.max}]")
    return int(value)


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
MAX_INPUT_ELEMENTS = 2**21  # per input; 8 MiB of float32. Larger inputs need the environment variable above.
# Set from the run's peak memory, not the input's: a run keeps every generated evaluation and calibration sample
# (96 of them), and each measuring child gets its own copy of the evaluation samples, so `mcbench run --quick` at
# 2^22 elements peaked at 5.4 GiB and at 2^26 (the limit before) at 12.9 GB with nothing finished in 120 s; at 2^21
# (a 3 x 640 x 640 image fits) it peaks at 3.3-4.1 GiB from run to run, in the 6 GiB the docs state
# (benchmarks/limits_memory.py input 2097152).


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
    axes = batch_axes([_dims(i) for i in graph_inputs])
    branching = branch_inputs(model)
    specs = tuple(replace(s, batch_axis=axis, selects_branch=_selects_branch(s, inputs.get(s.name), branching))
                  for s, axis in zip(specs, axes, strict=True))
    return Artifact(path, "onnx", specs)


def batch_axes(dims: list[list[int | str]]) -> list[int | None]:
    """Each input's batch axis, from the graph's dims (an int, or the dim's symbolic name, "" when unnamed).

    The first input with an axis has its batch there. Another input's batch axis is the one that shares that axis's name
    (`batch` in state [2, batch, 128]); where the first axis is dynamic but unnamed, an input whose only dynamic
    axis is not first has it there (Silero VAD's state [2, ?, 128]); otherwise the first axis, and none for a 0-d
    input.
    """
    leader = next((i for i, shape in enumerate(dims) if shape), None)  # the first input with an axis
    first = None if leader is None else dims[leader][0]
    dynamic = isinstance(first, str)
    axes: list[int | None] = []
    for index, shape in enumerate(dims):
        open_axes = [i for i, d in enumerate(shape) if isinstance(d, str)]
        if not shape:
            axes.append(None)
        elif index != leader and dynamic and first != "" and first in shape:
            axes.append(shape.index(first))
        elif index != leader and dynamic and first == "" and len(open_axes) == 1:
            axes.append(open_axes[0])
        else:
            axes.append(0)
    return axes


SELECTING_INPUTS = {"If": (0,), "Loop": (0, 1), "Where": (0,)}  # the condition, trip count: not the data
COMPARISON_OPS = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"}
PASS_THROUGH_OPS = {"Cast", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten"}


def branch_inputs(model) -> set[str]:
    """The graph inputs a branch or comparison node reads, directly or through casts and reshapes, in the main
    graph or a branch's subgraph: random values in them can take the model down a path it never takes in use."""
    nodes = list(_all_nodes(model.graph))
    sources = {i.name: i.name for i in model.graph.input}  # tensor -> the graph input it carries
    found: set[str] = set()
    for node in nodes:  # nodes are in topological order in a valid ONNX graph
        carried = [sources[t] for t in node.input if t in sources]
        if node.op_type in COMPARISON_OPS:
            found.update(carried)
        elif node.op_type in SELECTING_INPUTS:
            found.update(sources[node.input[i]] for i in SELECTING_INPUTS[node.op_type]
                         if i < len(node.input) and node.input[i] in sources)
        elif node.op_type in PASS_THROUGH_OPS and carried:
            sources.update({out: carried[0] for out in node.output})
    return found


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _all_nodes(sub)


def _selects_branch(spec: InputSpec, override: InputOverride | None, branching: set[str]) -> bool:
    """An integer input that must not be random: 0-d (a setting such as a sample rate, not data) or read by a
    branch or comparison node, unless an --input range says which values are safe."""
    integer = spec.dtype in INT_DTYPES
    ranged = override is not None and override.low is not None
    return integer and not ranged and (not spec.shape or spec.name in branching)


def _dims(value_info) -> list[int | str]:
    """The graph's dims of an input: a positive int where fixed, else its symbolic name ("" when unnamed)."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else d.dim_param
            for d in value_info.type.tensor_type.shape.dim]


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
