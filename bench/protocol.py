"""KServe v2 (Open Inference Protocol) tensors over HTTP: JSON, and the binary tensor data extension.

Used by the model server to encode answers (it reads requests with bench/request_parsing.py, the one validation
layer for their bodies), and by the load generator to encode requests once and to read (or only check the sizes of)
the answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

TO_V2 = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
         "int16": "INT16", "int8": "INT8", "uint64": "UINT64", "uint32": "UINT32", "uint16": "UINT16",
         "uint8": "UINT8", "bool": "BOOL"}
FROM_V2 = {v: k for k, v in TO_V2.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"


class BadRequest(ValueError):
    """A request that does not match the model; the message says what was expected and what came."""


class EncodeError(ValueError):
    """An answer the server cannot encode: outputs that do not match the model's output names, or a datatype the
    protocol has no name for. The server's fault or the model's, never the client's (a 500)."""


class NonFiniteOutput(EncodeError):
    """An output holding NaN or infinite values asked for as JSON, which cannot carry them (binary data can)."""


@dataclass(frozen=True)
class AnswerForm:
    """What a request asks of its answer: which outputs (None: all), and which come as binary data.

    `binary_data_output` in the request's parameters sets every output's form; an entry of the request's `outputs`
    with `parameters.binary_data` sets its own (the KServe v2 binary tensor data extension)."""

    outputs: tuple[str, ...] | None = None
    binary_default: bool = False
    binary: tuple[tuple[str, bool], ...] = ()  # per output, where the request said

    def wants_binary(self, name: str) -> bool:
        return dict(self.binary).get(name, self.binary_default)


def encode_infer_request(feeds: dict[str, np.ndarray], binary: bool = True,
                         binary_answer: bool = False) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an infer request for these tensors; `binary_answer` asks for every output as binary
    data (a server without the extension answers JSON, which a reader of the answer must also take)."""
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
    request: dict[str, Any] = {"inputs": inputs}
    if binary_answer:
        request["parameters"] = {"binary_data_output": True}
    header = json.dumps(request).encode()
    if not binary:
        return header, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + b"".join(chunks), headers


def short(value: object, limit: int = 40) -> str:
    """A client's value quoted in an error, cut short: an error says what was wrong, it does not echo the request."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"an integer of more than {limit} digits"  # repr() of a huge int is slow, or refused
    if isinstance(value, (list, dict, str, bytes)) and len(value) > limit:
        value = value[:limit] if not isinstance(value, dict) else dict(list(value.items())[:4])
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part and a view of the binary data after it: never a copy of the data (at the server's tensor limit,
    64 MiB of binary data, each copy was as much again)."""
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.strip()
    if not text.isdigit() or len(text) > 12:
        raise BadRequest(f"{HEADER_LENGTH} {short(header_length)} is not a byte count")
    length = int(text)
    if not 0 < length <= len(body):
        raise BadRequest(f"{HEADER_LENGTH} {length} does not fit a body of {len(body)} bytes")
    return body[:length], memoryview(body)[length:]


def encode_infer_response(model: str, names: list[str], outputs: list[np.ndarray]) -> dict[str, Any]:
    """The JSON answer for these outputs (every one as data); EncodeError where it cannot be written."""
    header, _ = _answer_entries(model, names, outputs, AnswerForm())
    return header


def encode_answer(model: str, names: list[str], outputs: list[np.ndarray],
                  form: AnswerForm) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the answer the request asked for: JSON, or with binary data after the JSON
    (its length in Inference-Header-Content-Length). NonFiniteOutput for NaN or infinity asked for as JSON,
    EncodeError for outputs that cannot be encoded at all."""
    header, chunks = _answer_entries(model, names, outputs, form)
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if not chunks:
        return text, {"content-type": "application/json"}
    return text + b"".join(chunks), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(text))}


def _answer_entries(model: str, names: list[str], outputs: list[np.ndarray],
                    form: AnswerForm) -> tuple[dict[str, Any], list[bytes]]:
    if len(names) != len(outputs):
        raise EncodeError(f"the model returned {len(outputs)} outputs for its {len(names)} output names "
                          f"({', '.join(names)})")
    entries, chunks = [], []
    for name, output in zip(names, outputs, strict=True):
        if form.outputs is not None and name not in form.outputs:
            continue
        array = np.asarray(output)
        datatype = TO_V2.get(str(array.dtype))
        if datatype is None:
            raise EncodeError(f"output {name!r} is of dtype {array.dtype}, which has no KServe v2 datatype here "
                              f"(numbers and booleans: {', '.join(TO_V2.values())})")
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if form.wants_binary(name):
            raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                raise NonFiniteOutput(f"the model's output {name!r} holds NaN or infinite values, which JSON cannot "
                                      "carry (ask for binary data: parameters.binary_data_output)")
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    return {"model_name": model, "outputs": entries}, chunks


def decode_infer_response(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """The outputs of an answer, JSON or binary (a client's reading); ValueError for one that does not add up."""
    json_part, binary = split_body(body, header_length)
    answer = json.loads(json_part)
    outputs, offset = {}, 0
    for entry in answer["outputs"]:
        dtype, shape = np.dtype(FROM_V2[entry["datatype"]]), tuple(entry["shape"])
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is None:
            outputs[entry["name"]] = np.asarray(entry["data"], dtype=dtype).reshape(shape)
            continue
        if size != int(np.prod(shape)) * dtype.itemsize or offset + size > len(binary):
            raise ValueError(f"output {entry['name']!r}: {size} bytes of binary data do not fit shape {list(shape)} "
                             f"of {entry['datatype']} or the {len(binary) - offset} bytes left")
        flat = np.frombuffer(binary, dtype.newbyteorder("<"), int(np.prod(shape)), offset)
        outputs[entry["name"]] = flat.astype(dtype).reshape(shape)
        offset += size
    if offset != len(binary):
        raise ValueError(f"{len(binary) - offset} bytes of binary data after the last output")
    return outputs


def answer_size_error(body: bytes, header_length: str | None) -> str | None:
    """Why a binary answer's bytes do not add up (its JSON's binary_data_size against its body and each output's
    shape and datatype), or None: what a load generator checks of every answer, at the cost of its short JSON."""
    if header_length is None:
        return None
    try:
        json_part, binary = split_body(body, header_length)
        sizes = [(int(np.prod(e["shape"])) * np.dtype(FROM_V2[e["datatype"]]).itemsize,
                  (e.get("parameters") or {}).get("binary_data_size")) for e in json.loads(json_part)["outputs"]]
    except (ValueError, KeyError, TypeError) as exc:
        return f"malformed binary answer: {type(exc).__name__}"
    if any(size is not None and size != need for need, size in sizes):
        return "malformed binary answer: a binary_data_size does not fit its output's shape"
    if sum(size for _, size in sizes if size is not None) != len(binary):
        return "malformed binary answer: its binary data is not the size its JSON says"
    return None
