"""The built-in model server: one model over the KServe v2 HTTP protocol (starlette on uvicorn).

Run as its own process, `python -m mcbench.bench.server --spec SPEC.json [--port 0] [--cores 0]` (or
`mcbench serve`), where SPEC.json holds `{"name", "artifact", "target"}`. It pins itself to `--cores`
before any runtime starts its thread pool, loads and warms the model, binds (127.0.0.1 unless told
otherwise), then prints `MCBENCH_SERVER_READY port=N dispatch=inline|thread model_ms=X instances=N threads=T
max_batch=B [max_wait_ms=W]`.

Answers are JSON, or binary data where the request asks (the KServe v2 binary tensor data extension:
`parameters.binary_data_output`, or an output's `binary_data`); each carries a Server-Timing header with the
model call, the encoding of the answer and the whole handler (docs/serving.md).

Guards, each answered at once rather than with unbounded latency: a body over `--max-body-mb` or a
tensor over `--max-elements` is a 400; a client that does not finish sending its body within
`--read-timeout-s` is a 408 (one that never finishes its headers is disconnected after as long);
more than `--max-queue` requests waiting for the model is a 503 with Retry-After; an inference past
`--timeout-s` is a 504; a missing or wrong bearer token (`--token` or
MCBENCH_SERVER_TOKEN) is a 401, compared in constant time. Error bodies say what was wrong with the
request and never echo the request back.

Inference runs one call at a time in a worker thread, except for a model faster than
`--inline-below-ms` (median of its warm-up calls): that one runs on the event loop itself, because
handing a call to a thread and back costs more than the call. Measured on the 2-core VM with the demo
CNN (0.03 ms a call): the handoff cost about 0.3 ms of server CPU a request, and serving inline took
the closed-loop peak from 994 to 1,406 req/s. Every request has the model's exact input shape (others
are a 400), so the warm-up time is what each call holds the loop for. An inline call is not cut short
by `--timeout-s`, but it yields to the loop once before it runs, so the queue bound holds for the requests
that arrived with it; those that arrive while it holds the loop wait in the socket backlog until it ends.
With `--max-batch N` (N > 1) a batcher joins up to N queued requests, waiting at most `--max-wait-ms`
for them, into one call along axis 0 (always in the thread). With `--instances N` the server holds N sessions of
the model and runs up to N calls (or batches) at once, each in a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hmac
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mcbench.bench.calibration import spin
from mcbench.bench.isolate import die_with_parent
from mcbench.bench.serving import MAX_INSTANCES, SessionPool

READY = "MCBENCH_SERVER_READY"
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "torch": "pytorch_eager"}
TOKEN_ENV = "MCBENCH_SERVER_TOKEN"
LARGE_BODY_BYTES = 64 * 1024  # a body past this is parsed off the event loop
LARGE_JSON_VALUES = 16 * 1024  # an answer with more values than this as JSON is written off the event loop


class StartError(RuntimeError):
    """A server that could not start: bad settings, a port in use, a model that does not load."""


@dataclass(frozen=True)
class ServerLimits:
    """What the server refuses or cuts short, so a bad or greedy client cannot hang or starve it."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_elements: int = 16 * 1024 * 1024  # per input tensor
    read_timeout_s: float = 10.0  # a client slower than this to send its body gets a 408
    timeout_s: float = 30.0  # inference deadline: 504 past it
    max_queue: int = 64  # requests waiting for the model beyond the one running: 503 past it
    token: str | None = None
    max_batch: int = 1
    max_wait_ms: float = 2.0
    instances: int = 1  # model sessions, each serving one call at a time (bench.serving)
    delay_ms: float = 0.0  # test hook: each model call also sleeps this long (a known service time)
    spin_ms: float = 0.0  # test hook: each model call also busy-waits this long (a known service time on a core)
    inline_below_ms: float = 1.0  # a model whose warm-up median is below this runs on the event loop (0: never)

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_elements", "max_queue", "max_batch", "instances"):
            if getattr(self, name) < 1:
                raise StartError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.instances > MAX_INSTANCES:  # one limit for the flag and for a results file's configuration
            raise StartError(f"instances must be at most {MAX_INSTANCES}, got {self.instances}")
        for name in ("read_timeout_s", "timeout_s"):
            if getattr(self, name) <= 0:
                raise StartError(f"{name} must be positive, got {getattr(self, name)}")
        if min(self.max_wait_ms, self.delay_ms, self.spin_ms, self.inline_below_ms) < 0:
            raise StartError("max_wait_ms, delay_ms, spin_ms and inline_below_ms cannot be negative")
        if self.token is not None and not self.token:
            raise StartError("an empty token would accept anyone; leave it unset instead")
        if self.token is not None and self.token != self.token.strip():
            raise StartError("the token has spaces around it, which an Authorization header cannot carry: no "
                             "request could match it")


class Batcher:
    """Joins queued requests into one model call along axis 0 (dynamic batching), then splits the answers."""

    def __init__(self, run, max_batch: int, max_wait_s: float, limiter, instances: int = 1) -> None:
        self.run, self.max_batch, self.max_wait_s, self.limiter = run, max_batch, max_wait_s, limiter
        self.instances = instances  # batches run at once, one an instance; the next fills while all are busy
        self.queue: asyncio.Queue | None = None
        self.batch_count = 0  # batches run and the requests in them, for /v2/stats
        self.batched_requests = 0

    async def submit(self, feeds: dict) -> list:
        if self.queue is None:
            self.queue, self.arrived = asyncio.Queue(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((feeds, future))
        self.arrived.set()
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        slots, running = asyncio.Semaphore(self.instances), set()
        while True:
            await slots.acquire()
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                # not wait_for(queue.get()): on Python 3.11 a timeout racing a get can drop the item
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = [item for item in batch if not item[1].done()]  # callers that timed out are gone
            task = loop.create_task(self._run(batch))
            running.add(task)
            task.add_done_callback(lambda t: (running.discard(t), slots.release()))

    async def _run(self, batch: list) -> None:
        import anyio
        import numpy as np

        if not batch:
            return
        self.batch_count += 1
        self.batched_requests += len(batch)
        try:  # whatever fails, every caller gets an answer and the loop goes on
            feeds = {k: np.concatenate([f[k] for f, _ in batch]) for k in batch[0][0]}
            outputs = await anyio.to_thread.run_sync(self.run, feeds, limiter=self.limiter)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for f, future in batch:
            rows = next(iter(f.values())).shape[0]
            if not future.done():
                future.set_result([o[start : start + rows] for o in outputs])
            start += rows


@dataclass(frozen=True)
class Dispatch:
    """Where model calls run: on the event loop (`inline`) or in a worker thread, and the measurement behind it."""

    inline: bool
    model_ms: float  # median of the warm-up calls

    @property
    def mode(self) -> str:
        return "inline" if self.inline else "thread"


def measured_dispatch(run, feeds: dict, below_ms: float, calls: int = 20, budget_s: float = 1.0) -> Dispatch:
    """Time warm-up calls of `run` (at most `calls` or `budget_s`); inline where their median is under `below_ms`."""
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while len(times) < calls and (not times or time.perf_counter() < end):
        start = time.perf_counter()
        run(feeds)
        times.append(time.perf_counter() - start)
    model_ms = sorted(times)[len(times) // 2] * 1e3
    return Dispatch(model_ms < below_ms, model_ms)


def build_app(name: str, session, artifact, platform: str, limits: ServerLimits, dispatch: Dispatch, run):
    """The starlette app for one loaded session; `run` makes one model call, where `dispatch` says."""
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from mcbench.bench.protocol import (
        HEADER_LENGTH,
        TO_V2,
        AnswerForm,
        BadRequest,
        EncodeError,
        InferRequest,
        NonFiniteOutput,
        encode_answer,
        max_body_bytes,
        parse_infer_request,
        short,
    )

    limiter = anyio.CapacityLimiter(limits.instances)  # one call at a time an instance
    batcher = Batcher(run, limits.max_batch, limits.max_wait_ms / 1e3, limiter, limits.instances) \
        if limits.max_batch > 1 else None
    state = {"admitted": 0, "rejected": 0, "timed_out": 0, "inline_calls": 0, "thread_calls": 0}
    metadata = {
        "name": name,
        "platform": platform,
        "inputs": [{"name": s.name, "datatype": TO_V2[s.dtype], "shape": list(s.shape)} for s in artifact.inputs],
        "outputs": [{"name": n} for n in session.output_names],
    }

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def refused(request: Request) -> JSONResponse | None:
        """A 401 unless the request carries the bearer token (when one is set); compared in constant time."""
        if limits.token is None:
            return None
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        # HTTP headers arrive decoded as Latin-1: back to the client's bytes, compared with the token's UTF-8
        sent = token.strip().encode("latin-1", errors="replace")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent, limits.token.encode()):
            return None
        return error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    async def ok(request: Request) -> Response:
        return Response(status_code=200)

    def known(request: Request) -> bool:
        return request.path_params["model"] == name

    def unknown(request: Request) -> JSONResponse:
        return error(404, f"unknown model {short(request.path_params['model'])}; this server has {name!r}")

    async def model_metadata(request: Request) -> Response:
        return refused(request) or (JSONResponse(metadata) if known(request) else unknown(request))

    async def model_ready(request: Request) -> Response:
        return refused(request) or (Response(status_code=200) if known(request) else unknown(request))

    async def stats(request: Request) -> Response:
        return refused(request) or JSONResponse({
            **state, "dispatch": dispatch.mode, "model_ms": round(dispatch.model_ms, 4),
            "instances": limits.instances, "max_batch": limits.max_batch,
            "max_wait_ms": limits.max_wait_ms if batcher else None,
            "batches": batcher.batch_count if batcher else None,
            "batched_requests": batcher.batched_requests if batcher else None})

    body_limit = min(limits.max_body_bytes, max_body_bytes(artifact.inputs))  # past it: not this model's request
    too_large = [(s.name, math.prod(s.shape)) for s in artifact.inputs if math.prod(s.shape) > limits.max_elements]
    parse_limiter = anyio.CapacityLimiter(1)  # one large body parsed at a time: bounded memory, short GIL holds

    async def read_body(request: Request) -> bytearray | JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > body_limit:
            return error(400, f"request body of {int(declared)} bytes is over the limit of {body_limit}")
        if too_large:  # no request for this model fits: refused before its body is read, as one too long is
            (over, count), *_ = too_large
            return error(400, f"input {over!r}: {count} elements, over the server's limit of {limits.max_elements}")
        body = bytearray()  # grown in place: a list of chunks joined at the end held the body twice
        try:
            with anyio.fail_after(limits.read_timeout_s):
                async for chunk in request.stream():
                    if len(body) + len(chunk) > body_limit:
                        return error(400, f"request body is over the limit of {body_limit} bytes")
                    body += chunk
        except TimeoutError:
            return error(408, f"request body not received within {limits.read_timeout_s:g} s")
        return body

    async def decoded(body: bytearray, header_length: str | None) -> InferRequest | JSONResponse:
        """The feeds and the answer asked for, or a 400; a large body is parsed in a worker thread so health probes
        still answer."""
        decode = functools.partial(parse_infer_request, body, header_length, artifact.inputs, session.output_names,
                                   limits.max_elements)
        try:
            if len(body) > LARGE_BODY_BYTES:
                return await anyio.to_thread.run_sync(decode, limiter=parse_limiter)
            return decode()
        except BadRequest as exc:
            return error(400, str(exc))
        except Exception as exc:  # a body the validation layer missed: still the client's error, logged once a while
            log_rarely(f"mcbench serve: malformed request refused: {type(exc).__name__}")
            return error(400, "malformed request body")

    async def answer(outputs: list, form: AnswerForm, started_ns: int, model_ns: int | None) -> Response:
        """The encoded answer, timed; a large JSON answer is written in a worker thread (the event loop serves on).
        An output the protocol cannot carry is a 500 that says why: NaN or infinity as JSON, or no datatype."""
        def encode() -> tuple[bytes, dict[str, str], int]:
            begun = time.perf_counter_ns()
            body, headers = encode_answer(name, session.output_names, outputs, form)
            return body, headers, time.perf_counter_ns() - begun

        as_json = sum(getattr(o, "size", 0) for n, o in zip(session.output_names, outputs, strict=False)
                      if not form.wants_binary(n))  # an ORT sequence output is a list: EncodeError's to name
        try:
            if as_json > LARGE_JSON_VALUES:
                body, headers, encode_ns = await anyio.to_thread.run_sync(encode)
            else:
                body, headers, encode_ns = encode()
        except NonFiniteOutput as exc:
            return error(500, str(exc))
        except EncodeError as exc:
            log_rarely(f"mcbench serve: cannot encode an answer: {exc}")
            return error(500, f"cannot encode the model's answer: {exc}")
        response = Response(body, headers=headers)
        response.headers["server-timing"] = server_timing(time.perf_counter_ns() - started_ns, model_ns, encode_ns)
        return response

    async def infer(request: Request) -> Response:
        started_ns, model_ns = time.perf_counter_ns(), None
        denied = refused(request)
        if denied is not None:
            return denied
        if not known(request):
            return unknown(request)
        if state["admitted"] >= limits.max_queue + limits.max_batch:  # before reading: a refusal must be cheap
            state["rejected"] += 1
            return error(503, f"server busy: {limits.max_queue} requests already queued", {"Retry-After": "1"})
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        parsed = await decoded(body, request.headers.get(HEADER_LENGTH))
        if isinstance(parsed, Response):
            return parsed
        feeds = parsed.feeds
        state["admitted"] += 1
        try:
            with anyio.fail_after(limits.timeout_s):
                if batcher is not None:
                    outputs = await batcher.submit(feeds)
                elif dispatch.inline:
                    # yield once: the requests that arrived with this one start and count as queued, so
                    # the queue bound (503) holds for inline calls too; one past its deadline gets its 504
                    await anyio.lowlevel.checkpoint()
                    state["inline_calls"] += 1
                    outputs, model_ns = timed(run, feeds)
                else:
                    state["thread_calls"] += 1
                    outputs, model_ns = await anyio.to_thread.run_sync(timed, run, feeds, limiter=limiter,
                                                                       abandon_on_cancel=True)
        except TimeoutError:
            state["timed_out"] += 1
            return error(504, f"inference did not finish within {limits.timeout_s:g} s")
        except Exception as exc:  # a runtime that rejects this input must not take the server down
            return error(500, f"inference failed: {type(exc).__name__}")
        finally:
            state["admitted"] -= 1
        return await answer(outputs, parsed.form, started_ns, model_ns)

    routes = [
        Route("/v2/health/live", ok),
        Route("/v2/health/ready", ok),
        Route("/v2/stats", stats),
        Route("/v2/models/{model}", model_metadata),
        Route("/v2/models/{model}/ready", model_ready),
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
    ]
    return Starlette(routes=routes)


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


_last_logged = [0.0]


def log_rarely(line: str, every_s: float = 10.0) -> None:
    """One line on stderr (the server log) at most every `every_s`: a flood of bad requests cannot grow the log."""
    now = time.monotonic()
    if now - _last_logged[0] >= every_s:
        _last_logged[0] = now
        print(line, file=sys.stderr, flush=True)


def _delayed(run, delay_s: float, spin_s: float = 0.0):
    """`run` with the test hooks' known service time added: a sleep of `delay_s`, a busy-wait of `spin_s` (whose
    end is set when it starts, so only the calls around it can add to it: benchmarks/truth.py)."""
    if delay_s <= 0 and spin_s <= 0:
        return run

    def slow(feeds):
        if delay_s > 0:
            time.sleep(delay_s)
        if spin_s > 0:
            spin(spin_s * 1e6)
        return run(feeds)

    return slow


def header_timeout_protocol(timeout_s: float):
    """uvicorn's h11 protocol with a deadline for each request's headers.

    uvicorn closes idle keep-alive connections, but waits forever on a client that opens a
    connection and never finishes its headers (slowloris); this closes such a connection after
    `timeout_s`. The body has its own deadline in the app (a 408).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        _timer = None
        _cycle_at_arm = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._between_requests():
                self._arm()

        def connection_lost(self, exc) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._timer is None:
                self._cycle_at_arm = self.cycle
                self._timer = self.loop.call_later(timeout_s, self._expire)

        def _expire(self) -> None:
            self._timer = None
            if self.transport.is_closing() or not self._between_requests():
                return
            if self.cycle is self._cycle_at_arm:  # no request began within the deadline
                self.transport.close()
            else:
                self._arm()

    return HeaderTimeoutH11


def check_batching(session, feeds: dict) -> None:
    """Refuse --max-batch on a model whose batch dimension is fixed, rather than fail every batched call."""
    import numpy as np

    try:
        session.run({name: np.concatenate([value] * 2) for name, value in feeds.items()})
    except Exception as exc:
        raise StartError(f"--max-batch needs a model with a variable batch dimension (axis 0): "
                         f"a batch of 2 failed with {type(exc).__name__}") from None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it on Linux
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(512)
    return sock


def serve(spec_path: Path, host: str, port: int, limits: ServerLimits | None = None) -> None:
    import numpy as np
    import uvicorn

    from mcbench.optimizer.artifact import Artifact
    from mcbench.optimizer.targets import Target, open_session

    limits = limits or ServerLimits()
    if not 0 <= port <= 65535:
        raise StartError(f"--port {port}: give a port from 1 to 65535, or 0 for a free one")
    spec = json.loads(Path(spec_path).read_text())
    artifact, target = Artifact.from_dict(spec["artifact"]), Target.from_dict(spec["target"])
    sock = bind(host, port)  # before loading the model: a port in use fails at once
    session = SessionPool([open_session(artifact, target) for _ in range(limits.instances)])
    feeds = {s.name: s.sample(np.random.default_rng(0)) for s in artifact.inputs}
    session.run(feeds)  # the first call pays for lazy initialisation
    if limits.max_batch > 1:
        check_batching(session, feeds)
    run = _delayed(session.run, limits.delay_ms / 1e3, limits.spin_ms / 1e3)
    # the batcher always uses the thread, and several instances need threads to run at once
    below_ms = limits.inline_below_ms if limits.max_batch == 1 and limits.instances == 1 else 0.0
    dispatch = measured_dispatch(run, feeds, below_ms)
    app = build_app(spec["name"], session, artifact, PLATFORMS[target.runtime], limits, dispatch, run)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            http=header_timeout_protocol(limits.read_timeout_s),
                            timeout_keep_alive=max(5, int(limits.read_timeout_s)), limit_concurrency=4096)
    batching = f"max_batch={limits.max_batch} max_wait_ms={limits.max_wait_ms:g}" if limits.max_batch > 1 \
        else "max_batch=1"
    print(f"{READY} port={sock.getsockname()[1]} dispatch={dispatch.mode} model_ms={dispatch.model_ms:.4f} "
          f"instances={limits.instances} threads={target.threads or 'default'} {batching}", flush=True)
    os.dup2(2, 1)  # nobody reads stdout after the ready line: anything printed later goes to the log, not a full pipe
    uvicorn.Server(config).run(sockets=[sock])


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags `python -m mcbench.bench.server` and `mcbench serve` share."""
    d = ServerLimits()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed when ready)")
    parser.add_argument("--cores", default="", help="comma-separated CPU cores to pin the server to")
    parser.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' (or set {TOKEN_ENV})")
    parser.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20,
                        help="largest request body in MiB (default %(default)g)")
    parser.add_argument("--max-elements", type=int, default=d.max_elements, help="largest tensor, in elements")
    parser.add_argument("--read-timeout-s", type=float, default=d.read_timeout_s,
                        help="a client must send its body within this (408 past it)")
    parser.add_argument("--timeout-s", type=float, default=d.timeout_s, help="inference deadline (504 past it)")
    parser.add_argument("--max-queue", type=int, default=d.max_queue,
                        help="requests allowed to wait for the model (503 with Retry-After beyond)")
    parser.add_argument("--instances", type=int,
                        help="model instances, each serving one call at a time (default 1; for RUN_DIR:VARIANT, "
                             "the run's best serving configuration)")
    parser.add_argument("--max-batch", type=int, help="dynamic batching: most requests per model call (default 1; "
                        "for RUN_DIR:VARIANT, the run's best serving configuration)")
    parser.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                        help="dynamic batching: longest wait for a batch to fill")
    parser.add_argument("--inline-below-ms", type=float, default=d.inline_below_ms,
                        help="run a model faster than this (warm-up median) on the event loop, not a worker "
                             "thread; 0: always the thread (default %(default)g)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # test hook
    parser.add_argument("--spin-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # test hook


def limits_from_args(args: argparse.Namespace) -> ServerLimits:
    return ServerLimits(
        max_body_bytes=int(args.max_body_mb * 2**20), max_elements=args.max_elements,
        read_timeout_s=args.read_timeout_s, timeout_s=args.timeout_s, max_queue=args.max_queue,
        token=args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None,
        max_batch=args.max_batch or 1, max_wait_ms=args.max_wait_ms, instances=args.instances or 1,
        delay_ms=args.delay_ms, spin_ms=args.spin_ms, inline_below_ms=args.inline_below_ms,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcbench.bench.server",
                                     description="serve one model over KServe v2 HTTP")
    parser.add_argument("--spec", type=Path, required=True, help='JSON: {"name", "artifact", "target"}')
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    try:
        limits = limits_from_args(args)
        if args.cores:
            os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
        serve(args.spec, args.host, args.port, limits)
    except StartError as exc:
        print(f"mcbench serve: {exc}", file=sys.stderr)
        return 2
    return 0


@dataclass
class ServerHandle:
    port: int
    pid: int
    log: Path
    dispatch: str = "thread"  # where its model calls run: inline (the event loop) or thread
    model_ms: float | None = None  # the warm-up median that decided it
    ready: dict[str, str] = field(default_factory=dict)  # every field of the ready line (instances, max_batch, ...)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # serve_in_subprocess never binds another address


@contextlib.contextmanager
def serve_in_subprocess(spec_path: Path, cores: list[int] | None, timeout_s: float = 120.0,
                        extra: list[str] | None = None, env: dict[str, str] | None = None,
                        port: int = 0) -> Iterator[ServerHandle]:
    """Start the server in its own process, wait until it is ready, stop it on exit (SIGTERM, then SIGKILL).

    `extra` are further server flags (limits, batching); a server that exits or is not ready within
    `timeout_s` raises StartError with the end of its log, never hangs.
    """
    log = Path(spec_path).with_suffix(".server.log")
    cmd = [sys.executable, "-m", "mcbench.bench.server", "--spec", str(spec_path), "--port", str(port), *(extra or [])]
    if cores:
        cmd += ["--cores", ",".join(map(str, cores))]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, start_new_session=True,
                                env={**os.environ, **(env or {})}, preexec_fn=die_with_parent)
    try:
        ready = _wait_ready(proc, log, timeout_s)
        yield ServerHandle(int(ready["port"]), proc.pid, log, dispatch=ready.get("dispatch", "thread"),
                           model_ms=float(ready["model_ms"]) if "model_ms" in ready else None, ready=ready)
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen, log: Path, timeout_s: float) -> dict[str, str]:
    """The ready line's `key=value` fields (port, dispatch, model_ms) once the server prints it."""
    deadline = time.monotonic() + timeout_s
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
        if ready:
            line = proc.stdout.readline()
            if line.startswith(READY.encode()):
                return dict(item.split("=", 1) for item in line.decode().split()[1:] if "=" in item)
        if proc.poll() is not None:
            raise StartError(f"model server exited with code {proc.returncode} before it was ready: {_tail(log)}")
    raise StartError(f"model server not ready after {timeout_s:g} s: {_tail(log)}")


def _tail(log: Path, chars: int = 1500) -> str:
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    return f"{text[-chars:]} (log: {log})" if text else f"no output (log: {log})"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
