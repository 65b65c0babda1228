"""KServe v2 infer requests read by the model server: the one validation layer for request bodies.

Every malformed body, however deep or large, ends here as a BadRequest (a 400), never as an exception the server
did not expect; the wire format itself (datatypes, the binary data, the answers) is bench/protocol.py's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from mcbench.bench.protocol import TO_V2, AnswerForm, BadRequest, short, split_body
from mcbench.optimizer.artifact import InputSpec


@dataclass(frozen=True)
class InferRequest:
    """What the server reads from a request: the model's feeds and the answer it asks for."""

    feeds: dict[str, np.ndarray]
    form: AnswerForm


def decode_infer_request(body: bytes, header_length: str | None, specs: tuple[InputSpec, ...],
                         max_elements: int | None = None) -> dict[str, np.ndarray]:
    """Feeds for the model from a request body, checked against the model's inputs (parse_infer_request's)."""
    return parse_infer_request(body, header_length, specs, None, max_elements).feeds


def parse_infer_request(body: bytes, header_length: str | None, specs: tuple[InputSpec, ...],
                        output_names: list[str] | None, max_elements: int | None = None) -> InferRequest:
    """Feeds for the model from a request body, checked against the model's inputs, and the answer it asks for
    (checked against `output_names`; None: not checked).

    This is the one validation layer for request bodies: every malformed body, however deep or large,
    ends here as a BadRequest (a 400), never as an exception the server did not expect. A tensor over
    `max_elements`, or whose data count does not match its shape, is refused before its data is converted.
    Non-finite numbers (NaN, Infinity, null, a value past the datatype's range) are refused: JSON cannot carry
    them, and a request that holds them in binary data is no more a request a model is measured on.
    """
    json_part, binary = split_body(body, header_length)
    request = _parse_json(json_part)
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("request has no 'inputs' list")
    _check_request_fields(request)
    by_name = {s.name: s for s in specs}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for entry in inputs:
        if not isinstance(entry, dict):
            raise BadRequest("each input must be an object with name, shape, datatype and data")
        name = entry.get("name")
        spec = by_name.get(name) if isinstance(name, str) else None
        if spec is None:
            raise BadRequest(f"unknown input {short(name)}; the model's inputs are {', '.join(by_name)}")
        array, offset = _tensor(entry, spec, binary, offset, max_elements)
        feeds[spec.name] = array
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data after the last input's binary_data_size")
    missing = [n for n in by_name if n not in feeds]
    if missing:
        raise BadRequest(f"missing input(s) {', '.join(missing)}")
    return InferRequest(feeds, answer_form(request, output_names))


def _flag(parameters: object, key: str, where: str) -> bool | None:
    """A boolean parameter (None where absent); parameters that are not an object, or a flag that is not a
    boolean, are refused."""
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise BadRequest(f"{where}: parameters must be an object, got {short(parameters)}")
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{where}: {key} must be true or false, got {short(value)}")
    return value


def answer_form(request: dict[str, Any], output_names: list[str] | None) -> AnswerForm:
    """The request's `parameters.binary_data_output` and `outputs` list (its form checked by _check_request_fields),
    checked against the model's outputs."""
    default = _flag(request.get("parameters"), "binary_data_output", "request") or False
    wanted = request.get("outputs")
    if wanted is None:
        return AnswerForm(None, default)
    names, binary = [], []
    for entry in wanted:
        name = entry.get("name")
        if not isinstance(name, str) or (output_names is not None and name not in output_names):
            known = ", ".join(output_names or [])
            raise BadRequest(f"unknown output {short(name)}; the model's outputs are {known}")
        names.append(name)
        flag = _flag(entry.get("parameters"), "binary_data", f"output {short(name)}")
        if flag is not None:
            binary.append((name, flag))
    return AnswerForm(tuple(names), default, tuple(binary))


def _check_request_fields(request: dict[str, Any]) -> None:
    """The rest of the body as strictly as its inputs: `id` a string, `parameters` an object, `outputs` a list of
    objects each naming an output; no other keys."""
    unknown = sorted(set(request) - {"id", "parameters", "inputs", "outputs"})
    if unknown:
        raise BadRequest(f"unknown key {short(unknown[0])} (a request has id, parameters, inputs, outputs)")
    if "id" in request and not isinstance(request["id"], str):
        raise BadRequest(f"id must be a string, got {short(request['id'])}")
    if "parameters" in request and not isinstance(request["parameters"], dict):
        raise BadRequest(f"parameters must be an object, got {short(request['parameters'])}")
    outputs = request.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise BadRequest(f"outputs must be a list of objects with a name, got {short(outputs)}")


def _refuse_constant(name: str) -> float:
    raise BadRequest(f"{name} is not accepted: inputs must be finite numbers")


MAX_CONTAINERS = 2**17  # arrays and objects in one body: a request has a few a tensor; 2^17 '[]' parse in 0.1 s
MAX_VALUE_BYTES = 32  # the most one JSON value takes with its separator ('-1.2345678901234567e-308, ' is 26)
BODY_SLACK_BYTES = 2**20  # names, shapes, parameters and whitespace around the values


def max_body_bytes(specs: tuple[InputSpec, ...]) -> int:
    """The largest body a request for these inputs can need (JSON data; binary data is smaller): a larger one is
    refused before it is read, since it cannot hold the declared elements (issue 32, M15)."""
    return BODY_SLACK_BYTES + MAX_VALUE_BYTES * sum(int(np.prod(s.shape)) for s in specs)


def _parse_json(text: bytes) -> object:
    """The request's JSON; a body too deep, an integer too long or a non-finite constant is a BadRequest.

    A body of more than MAX_CONTAINERS arrays and objects is refused before parsing: the parser holds the GIL,
    and 16 MiB of `[]` would stall every other request for four seconds.
    """
    containers = text.count(b"[") + text.count(b"{")
    if containers > MAX_CONTAINERS:
        raise BadRequest(f"request body holds {containers} arrays and objects (at most {MAX_CONTAINERS})")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except BadRequest:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {short(str(exc), 80)}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except ValueError:  # an integer past Python's int-string limit
        raise BadRequest("request body holds a number too long to read") from None


def _shape_ok(shape: object, expected: tuple[int, ...]) -> bool:
    """Exactly the model's input shape (the server batches requests itself; a client does not)."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        return False
    return shape == list(expected)


def _binary_size(entry: dict[str, Any], name: str) -> int | None:
    """The input's binary_data_size, None when it has none; anything but a non-negative integer is refused."""
    parameters = entry.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise BadRequest(f"input {name!r}: parameters must be an object, got {short(parameters)}")
    size = parameters.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer, got {short(size)}")
    return size


def _tensor(entry: dict[str, Any], spec: InputSpec, binary: memoryview, offset: int,
            max_elements: int | None = None) -> tuple[np.ndarray, int]:
    datatype, shape = entry.get("datatype"), entry.get("shape")
    expected_type = TO_V2[spec.dtype]
    if datatype != expected_type:
        raise BadRequest(f"input {spec.name!r}: datatype {short(datatype)}, expected {expected_type}")
    if not _shape_ok(shape, spec.shape):
        raise BadRequest(f"input {spec.name!r}: shape {short(shape)}, expected {list(spec.shape)}")
    count = int(np.prod(spec.shape))
    if max_elements is not None and count > max_elements:
        raise BadRequest(f"input {spec.name!r}: {count} elements, over the server's limit of {max_elements}")
    size = _binary_size(entry, spec.name)
    if size is not None:
        return _binary_tensor(spec, count, size, binary, offset), offset + size
    data = entry.get("data")
    if not isinstance(data, list):
        raise BadRequest(f"input {spec.name!r}: no 'data' and no binary_data_size")
    if len(data) != count:  # before any conversion: a body of millions of values costs nothing more
        raise BadRequest(f"input {spec.name!r}: {len(data)} values, shape {list(spec.shape)} needs {count}")
    return _json_tensor(spec, data).reshape(spec.shape), offset


def _binary_tensor(spec: InputSpec, count: int, size: int, binary: memoryview, offset: int) -> np.ndarray:
    nbytes = count * np.dtype(spec.dtype).itemsize
    if size != nbytes:
        raise BadRequest(f"input {spec.name!r}: binary_data_size is {short(size)} bytes, shape {list(spec.shape)} "
                            f"of {TO_V2[spec.dtype]} needs {nbytes}")
    if offset + size > len(binary):
        raise BadRequest(f"input {spec.name!r}: binary data is {len(binary) - offset} bytes, "
                            f"binary_data_size says {size}")
    raw = binary[offset : offset + size]
    array = np.frombuffer(raw, dtype=np.dtype(spec.dtype).newbyteorder("<")).astype(spec.dtype)
    _require_finite(spec, array)
    return array.reshape(spec.shape)


def _element_ok(dtype: str) -> type | tuple[type, ...]:
    """The JSON value types a datatype accepts: numbers for numbers (never strings or booleans), bools for BOOL."""
    if dtype == "bool":
        return bool
    return int if np.issubdtype(np.dtype(dtype), np.integer) else (int, float)


def _json_tensor(spec: InputSpec, data: list) -> np.ndarray:
    kind = _element_ok(spec.dtype)
    strict_bool = kind is bool
    for value in data:
        if not isinstance(value, kind) or (not strict_bool and isinstance(value, bool)):
            raise BadRequest(f"input {spec.name!r}: data must be a flat list of {TO_V2[spec.dtype]} values, "
                                f"found {short(value)}")
    try:
        with np.errstate(over="ignore"):
            array = np.asarray(data, dtype=spec.dtype)
    except OverflowError:
        raise BadRequest(f"input {spec.name!r}: a value is out of range for {TO_V2[spec.dtype]}") from None
    _require_finite(spec, array)
    return array


def _require_finite(spec: InputSpec, array: np.ndarray) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise BadRequest(f"input {spec.name!r}: NaN or infinite values (or values past {TO_V2[spec.dtype]}'s "
                            "range) are not accepted")
