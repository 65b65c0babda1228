"""The built-in model server's app: one model over the KServe v2 HTTP protocol (starlette, served on uvicorn).

ModelServer holds the loaded model, its limits, its dispatch and its counters, and answers each endpoint with one
method; build_app wires them to routes. The process around it (flags, loading, the ready line) is
bench/server_cli.py, the limits it applies bench/guards.py, where its model calls run bench/batching.py.

Answers are JSON, or binary data where the request asks (the KServe v2 binary tensor data extension:
`parameters.binary_data_output`, or an output's `binary_data`); each carries a Server-Timing header with the
model call, the encoding of the answer and the whole handler (docs/serving.md). Every refusal is answered at once,
with a body that says what was wrong with the request and never echoes the request back.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcbench.bench.batching import BatchAxes, Batcher, Dispatch
from mcbench.bench.guards import ServerLimits, bearer_ok
from mcbench.bench.protocol import (
    HEADER_LENGTH,
    TO_V2,
    AnswerForm,
    BadRequest,
    EncodeError,
    NonFiniteOutput,
    encode_answer,
    short,
)
from mcbench.bench.request_parsing import InferRequest, max_body_bytes, parse_infer_request

LARGE_BODY_BYTES = 64 * 1024  # a body past this is parsed off the event loop
LARGE_JSON_VALUES = 16 * 1024  # an answer with more values than this as JSON is written off the event loop


@dataclasses.dataclass
class Counters:
    """The requests so far, for /v2/stats."""

    admitted: int = 0  # requests read and parsed, now waiting for or in a model call (the queue bound counts them)
    rejected: int = 0  # refused with a 503: the queue was full
    timed_out: int = 0  # answered with a 504: past the inference deadline
    inline_calls: int = 0  # model calls on the event loop
    thread_calls: int = 0  # model calls in a worker thread (a batch is the batcher's)


class ModelServer:
    """One loaded model behind the KServe v2 endpoints; `run` makes one model call, where `dispatch` says, or
    the batcher joins requests into one along `batch_axes` (None: no batching)."""

    def __init__(self, name: str, session, artifact, platform: str, limits: ServerLimits, dispatch: Dispatch,
                 run, batch_axes: BatchAxes | None = None) -> None:
        self.name, self.session, self.inputs, self.run = name, session, artifact.inputs, run
        self.limits, self.dispatch, self.counters = limits, dispatch, Counters()
        self.limiter = anyio.CapacityLimiter(limits.instances)  # one call at a time an instance
        self.parse_limiter = anyio.CapacityLimiter(1)  # one large body parsed at a time: bounded memory, short holds
        self.batcher = None if batch_axes is None else \
            Batcher(run, batch_axes, limits.max_batch, limits.max_wait_ms / 1e3, self.limiter, limits.instances)
        self.metadata = {
            "name": name,
            "platform": platform,
            "inputs": [{"name": s.name, "datatype": TO_V2[s.dtype], "shape": list(s.shape)} for s in self.inputs],
            "outputs": [{"name": n} for n in session.output_names],
        }
        self.body_limit = min(limits.max_body_bytes, max_body_bytes(self.inputs))  # past it: not this model's request
        self.too_large = [(s.name, math.prod(s.shape)) for s in self.inputs if math.prod(s.shape) > limits.max_elements]
        self.last_logged = 0.0  # when log_rarely last wrote (time.monotonic)

    # the endpoints

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200)  # the model is loaded and warm before the server listens

    async def model_metadata(self, request: Request) -> Response:
        return self.refused(request) or (JSONResponse(self.metadata) if self.known(request) else self.unknown(request))

    async def model_ready(self, request: Request) -> Response:
        return self.refused(request) or (Response(status_code=200) if self.known(request) else self.unknown(request))

    async def stats(self, request: Request) -> Response:
        batcher, limits = self.batcher, self.limits
        return self.refused(request) or JSONResponse({
            **dataclasses.asdict(self.counters), "dispatch": self.dispatch.mode,
            "model_ms": round(self.dispatch.model_ms, 4), "instances": limits.instances, "max_batch": limits.max_batch,
            "max_wait_ms": limits.max_wait_ms if batcher else None,
            "batches": batcher.batch_count if batcher else None,
            "batched_requests": batcher.batched_requests if batcher else None})

    async def infer(self, request: Request) -> Response:
        started_ns = time.perf_counter_ns()
        refusal = self.refused(request) or (None if self.known(request) else self.unknown(request)) or self.busy()
        if refusal is not None:
            return refusal
        body = await self.read_body(request)
        if isinstance(body, Response):
            return body
        parsed = await self.decoded(body, request.headers.get(HEADER_LENGTH))
        if isinstance(parsed, Response):
            return parsed
        called = await self.call_model(parsed.feeds)
        if isinstance(called, Response):
            return called
        outputs, model_ns = called
        return await self.answer(outputs, parsed.form, started_ns, model_ns)

    # the steps of an answer

    def refused(self, request: Request) -> JSONResponse | None:
        """A 401 unless the request carries the bearer token (when one is set)."""
        if bearer_ok(request.headers.get("authorization", ""), self.limits.token):
            return None
        return error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    def known(self, request: Request) -> bool:
        return request.path_params["model"] == self.name

    def unknown(self, request: Request) -> JSONResponse:
        return error(404, f"unknown model {short(request.path_params['model'])}; this server has {self.name!r}")

    def busy(self) -> JSONResponse | None:
        """A 503 when the queue is full; checked before the body is read, since a refusal must be cheap."""
        if self.counters.admitted < self.limits.max_queue + self.limits.max_batch:
            return None
        self.counters.rejected += 1
        return error(503, f"server busy: {self.limits.max_queue} requests already queued", {"Retry-After": "1"})

    async def read_body(self, request: Request) -> bytearray | JSONResponse:
        """The request's body, or a 400 for one over the limits or a 408 for one not sent in time."""
        limit, limits = self.body_limit, self.limits
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return error(400, f"request body of {int(declared)} bytes is over the limit of {limit}")
        if self.too_large:  # no request for this model fits: refused before its body is read, as one too long is
            (over, count), *_ = self.too_large
            return error(400, f"input {over!r}: {count} elements, over the server's limit of {limits.max_elements}")
        body = bytearray()  # grown in place: a list of chunks joined at the end held the body twice
        try:
            with anyio.fail_after(limits.read_timeout_s):
                async for chunk in request.stream():
                    if len(body) + len(chunk) > limit:
                        return error(400, f"request body is over the limit of {limit} bytes")
                    body += chunk
        except TimeoutError:
            return error(408, f"request body not received within {limits.read_timeout_s:g} s")
        return body

    async def decoded(self, body: bytearray, header_length: str | None) -> InferRequest | JSONResponse:
        """The feeds and the answer asked for, or a 400; a large body is parsed in a worker thread so health probes
        still answer."""
        decode = functools.partial(parse_infer_request, body, header_length, self.inputs, self.session.output_names,
                                   self.limits.max_elements)
        try:
            if len(body) > LARGE_BODY_BYTES:
                return await anyio.to_thread.run_sync(decode, limiter=self.parse_limiter)
            return decode()
        except BadRequest as exc:
            return error(400, str(exc))
        except Exception as exc:  # a body the validation layer missed: still the client's error, logged once a while
            self.log_rarely(f"mcbench serve: malformed request refused: {type(exc).__name__}")
            return error(400, "malformed request body")

    async def call_model(self, feeds: dict) -> tuple[list, int | None] | JSONResponse:
        """The outputs and the model call's time, or a 504 past the deadline or a 500 where the call failed."""
        self.counters.admitted += 1
        try:
            with anyio.fail_after(self.limits.timeout_s):
                return await self.dispatched(feeds)
        except TimeoutError:
            self.counters.timed_out += 1
            return error(504, f"inference did not finish within {self.limits.timeout_s:g} s")
        except Exception as exc:  # a runtime that rejects this input must not take the server down
            return error(500, f"inference failed: {type(exc).__name__}")
        finally:
            self.counters.admitted -= 1

    async def dispatched(self, feeds: dict) -> tuple[list, int | None]:
        """The model's outputs, run where the dispatch says, and the call's time (ns; None for a batch's)."""
        if self.batcher is not None:
            return await self.batcher.submit(feeds), None
        if self.dispatch.inline:
            # yield once: the requests that arrived with this one start and count as queued, so
            # the queue bound (503) holds for inline calls too; one past its deadline gets its 504
            await anyio.lowlevel.checkpoint()
            self.counters.inline_calls += 1
            return timed(self.run, feeds)
        self.counters.thread_calls += 1
        return await anyio.to_thread.run_sync(timed, self.run, feeds, limiter=self.limiter, abandon_on_cancel=True)

    async def answer(self, outputs: list, form: AnswerForm, started_ns: int, model_ns: int | None) -> Response:
        """The encoded answer, timed; a large JSON answer is written in a worker thread (the event loop serves on).
        An output the protocol cannot carry is a 500 that says why: NaN or infinity as JSON, or no datatype."""
        names = self.session.output_names

        def encode() -> tuple[bytes, dict[str, str], int]:
            begun = time.perf_counter_ns()
            body, headers = encode_answer(self.name, names, outputs, form)
            return body, headers, time.perf_counter_ns() - begun

        as_json = sum(getattr(o, "size", 0) for n, o in zip(names, outputs, strict=False)
                      if not form.wants_binary(n))  # an ORT sequence output is a list: EncodeError's to name
        try:
            if as_json > LARGE_JSON_VALUES:
                body, headers, encode_ns = await anyio.to_thread.run_sync(encode)
            else:
                body, headers, encode_ns = encode()
        except NonFiniteOutput as exc:
            return error(500, str(exc))
        except EncodeError as exc:
            self.log_rarely(f"mcbench serve: cannot encode an answer: {exc}")
            return error(500, f"cannot encode the model's answer: {exc}")
        response = Response(body, headers=headers)
        response.headers["server-timing"] = server_timing(time.perf_counter_ns() - started_ns, model_ns, encode_ns)
        return response

    def log_rarely(self, line: str, every_s: float = 10.0) -> None:
        """One line on stderr (the server log) at most every `every_s`: a flood of bad requests cannot grow the log."""
        now = time.monotonic()
        if now - self.last_logged >= every_s:
            self.last_logged = now
            print(line, file=sys.stderr, flush=True)


def build_app(name: str, session, artifact, platform: str, limits: ServerLimits, dispatch: Dispatch,
              run, batch_axes: BatchAxes | None = None) -> Starlette:
    """The starlette app for one loaded session; `run` makes one model call, where `dispatch` says (batched along
    `batch_axes` where given)."""
    server = ModelServer(name, session, artifact, platform, limits, dispatch, run, batch_axes)
    return Starlette(routes=[
        Route("/v2/health/live", server.live),
        Route("/v2/health/ready", server.ready),
        Route("/v2/stats", server.stats),
        Route("/v2/models/{model}", server.model_metadata),
        Route("/v2/models/{model}/ready", server.model_ready),
        Route("/v2/models/{model}/infer", server.infer, methods=["POST"]),
    ])


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def timed(run, feeds: dict) -> tuple[list, int]:
    """`run(feeds)` and how long it took (ns), timed where it runs: a worker thread's hand-off is not in it."""
    started = time.perf_counter_ns()
    outputs = run(feeds)
    return outputs, time.perf_counter_ns() - started


def server_timing(app_ns: int, model_ns: int | None, encode_ns: int | None = None) -> str:
    """The Server-Timing header (W3C): `app` from the handler's start to the encoded answer, `model` the model
    call alone (absent when a batch ran it), `encode` the writing of the answer (JSON or binary) within `app`;
    the rest of a client's latency is HTTP parsing, the wire and itself."""
    model = f"model;dur={model_ns / 1e6:.3f}, " if model_ns is not None else ""
    encode = f"encode;dur={encode_ns / 1e6:.3f}, " if encode_ns is not None else ""
    return f"{model}{encode}app;dur={app_ns / 1e6:.3f}"
