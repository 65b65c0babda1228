"""KServe v2 (Open Inference Protocol) tensors over HTTP: JSON, and the binary tensor data extension.

Used by the model server to decode requests and by the load generator to encode them once.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mcbench.optimizer.artifact import InputSpec

TO_V2 = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
         "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}
FROM_V2 = {v: k for k, v in TO_V2.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"


class ProtocolError(ValueError):
    """A request that does not match the model; the message says what was expected and what came."""


def encode_infer_request(feeds: dict[str, np.ndarray], binary: bool = True) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an infer request for these tensors."""
    inputs, chunks = [], []
    for name, array in feeds.items():
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": TO_V2[str(array.dtype)]}
        if binary:
            raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array.reshape(-1).tolist()
        inputs.append(entry)
    header = json.dumps({"inputs": inputs}).encode()
    if not binary:
        return header, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + b"".join(chunks), headers


def decode_infer_request(body: bytes, header_length: str | None, specs: tuple[InputSpec, ...],
                         max_elements: int | None = None) -> dict[str, np.ndarray]:
    """Feeds for the model from a request body, checked against the model's inputs.

    A tensor over `max_elements` is refused before its data is converted.
    """
    json_part, binary = _split(body, header_length)
    try:
        request = json.loads(json_part)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"request body is not valid JSON: {exc}") from None
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("request has no 'inputs' list")
    by_name = {s.name: s for s in specs}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for entry in inputs:
        if not isinstance(entry, dict):
            raise ProtocolError("each input must be an object with name, shape, datatype and data")
        spec = by_name.get(entry.get("name"))
        if spec is None:
            given = short(entry.get("name"))
            raise ProtocolError(f"unknown input {given}; the model's inputs are {', '.join(by_name)}")
        array, offset = _tensor(entry, spec, binary, offset, max_elements)
        feeds[spec.name] = array
    missing = [n for n in by_name if n not in feeds]
    if missing:
        raise ProtocolError(f"missing input(s) {', '.join(missing)}")
    return feeds


def short(value: object, limit: int = 40) -> str:
    """A client's value quoted in an error, cut short: an error says what was wrong, it does not echo the request."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape_ok(shape: object, expected: tuple[int, ...]) -> bool:
    """Exactly the model's input shape (the server batches requests itself; a client does not)."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        return False
    return shape == list(expected)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise ProtocolError(f"{HEADER_LENGTH} {header_length!r} is not an integer") from None
    if not 0 < length <= len(body):
        raise ProtocolError(f"{HEADER_LENGTH} {length} does not fit a body of {len(body)} bytes")
    return body[:length], body[length:]


def _tensor(entry: dict[str, Any], spec: InputSpec, binary: bytes, offset: int,
            max_elements: int | None = None) -> tuple[np.ndarray, int]:
    datatype, shape = entry.get("datatype"), entry.get("shape")
    expected_type = TO_V2[spec.dtype]
    if datatype != expected_type:
        raise ProtocolError(f"input {spec.name!r}: datatype {short(datatype)}, expected {expected_type}")
    if isinstance(shape, list) and all(isinstance(d, int) for d in shape) and max_elements is not None:
        declared = int(np.prod(shape, dtype=object))
        if declared > max_elements:
            raise ProtocolError(f"input {spec.name!r}: {declared} elements, over the server's limit of {max_elements}")
    if not _shape_ok(shape, spec.shape):
        raise ProtocolError(f"input {spec.name!r}: shape {short(shape)}, expected {list(spec.shape)}")
    count = int(np.prod(shape))
    size = (entry.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        nbytes = count * np.dtype(spec.dtype).itemsize
        if size != nbytes or offset + size > len(binary):
            raise ProtocolError(f"input {spec.name!r}: {size} bytes of binary data, expected {nbytes}")
        raw = binary[offset : offset + size]
        array = np.frombuffer(raw, dtype=np.dtype(spec.dtype).newbyteorder("<")).astype(spec.dtype)
        return array.reshape(spec.shape), offset + size
    data = entry.get("data")
    if not isinstance(data, list):
        raise ProtocolError(f"input {spec.name!r}: no 'data' and no binary_data_size")
    try:
        array = np.asarray(data, dtype=spec.dtype).reshape(-1)
    except (ValueError, TypeError, OverflowError):
        raise ProtocolError(f"input {spec.name!r}: data is not a flat list of {expected_type} values") from None
    if array.size != count:
        raise ProtocolError(f"input {spec.name!r}: {array.size} values, shape {list(spec.shape)} needs {count}")
    return array.reshape(spec.shape), offset


def encode_infer_response(model: str, names: list[str], outputs: list[np.ndarray]) -> dict[str, Any]:
    return {
        "model_name": model,
        "outputs": [
            {"name": n, "shape": list(o.shape), "datatype": TO_V2.get(str(o.dtype), "FP32"),
             "data": o.reshape(-1).tolist()}
            for n, o in zip(names, outputs, strict=True)
        ],
    }
