"""Where the model server's calls run: on the event loop, in a worker thread, or joined into batches.

Inference runs one call at a time in a worker thread, except for a model faster than `--inline-below-ms` (median of
its warm-up calls, measured_dispatch): that one runs on the event loop itself, because handing a call to a thread and
back costs more than the call. Measured on the 2-core VM with the demo CNN (0.03 ms a call): the handoff cost about
0.3 ms of server CPU a request, and serving inline took the closed-loop peak from 994 to 1,406 req/s. Every request
has the model's exact input shape (others are a 400), so the warm-up time is what each call holds the loop for. An
inline call is not cut short by `--timeout-s`, but it yields to the loop once before it runs, so the queue bound holds
for the requests that arrived with it; those that arrive while it holds the loop wait in the socket backlog until it
ends. With `--max-batch N` (N > 1) a Batcher joins up to N queued requests, waiting at most `--max-wait-ms` for them,
into one call (always in the thread): each input along its own batch axis (Silero VAD's state [2, N, 128] on axis 1),
each output split along its own (a CTC recogniser's time-major [T, N, C] on axis 1), found at start-up on a batch of
two (check_batching). Requests are joined only where their values of the inputs without a batch axis (a 0-d `sr`)
are equal. With `--instances N` the server holds N sessions of the model and runs up to N calls (or batches) at
once, each in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from mcbench.base.text import first_line
from mcbench.bench.guards import StartError


@dataclass(frozen=True)
class BatchAxes:
    """Where a model's inputs and outputs hold the batch: requests are joined along each input's own batch axis
    (`inputs`, by name, from the artifact's input specs) and answers split along each output's (`outputs`, in the
    session's order, found by check_batching). An input without a batch axis (None: a 0-d input such as Silero
    VAD's `sr`) is not joined: a batch holds only requests with equal values of it, given to the model once."""

    inputs: dict[str, int | None]
    outputs: tuple[int, ...] = ()

    def key(self, feeds: dict) -> tuple:
        """What requests must share to be joined: their values of the inputs without a batch axis."""
        return tuple((name, value.dtype.str, value.shape, value.tobytes()) for name, value in feeds.items()
                     if self.inputs[name] is None)

    def join(self, requests: list[dict]) -> dict:
        """One feed of the requests, each input joined along its batch axis (one without: the first's value)."""
        import numpy as np

        return {name: requests[0][name] if axis is None else np.concatenate([r[name] for r in requests], axis)
                for name, axis in self.inputs.items()}

    def split(self, outputs: list, count: int) -> list[list]:
        """Each request's answer: every output cut into `count` equal parts along its batch axis (every request
        has the model's exact input shape, so each gave the same number of rows)."""
        import numpy as np

        parts = [np.split(o, count, axis) for o, axis in zip(outputs, self.outputs, strict=True)]
        return [list(answer) for answer in zip(*parts, strict=True)]


class Batcher:
    """Joins queued requests into one model call (dynamic batching), then splits the answers; `axes` says along
    which axes, and which requests may share a call."""

    def __init__(self, run, axes: BatchAxes, max_batch: int, max_wait_s: float, limiter, instances: int = 1) -> None:
        self.run, self.axes, self.max_batch, self.max_wait_s, self.limiter = run, axes, max_batch, max_wait_s, limiter
        self.instances = instances  # batches run at once, one an instance; the next fills while all are busy
        self.pending: deque = deque()  # (feeds, key, future) in arrival order, on the server's event loop
        self.arrived: asyncio.Event | None = None  # made on the first request, on the server's event loop
        self._task: asyncio.Task | None = None
        self.batch_count = 0  # batches run and the requests in them, for /v2/stats
        self.batched_requests = 0

    async def submit(self, feeds: dict) -> list:
        loop = asyncio.get_running_loop()
        if self.arrived is None:
            self.arrived = asyncio.Event()
            self._task = loop.create_task(self._loop())
        future = loop.create_future()
        self.pending.append((feeds, self.axes.key(feeds), future))
        self.arrived.set()
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        slots, running = asyncio.Semaphore(self.instances), set()
        while True:
            await slots.acquire()
            batch = await self._next_batch(loop)
            task = loop.create_task(self._run(batch))
            running.add(task)
            task.add_done_callback(lambda t: (running.discard(t), slots.release()))

    async def _next_batch(self, loop: asyncio.AbstractEventLoop) -> list:
        """The oldest waiting request and up to max_batch - 1 later ones it may be joined with, waiting at most
        max_wait_s for them; the others keep their place for the next batch."""
        while not self.pending:
            self.arrived.clear()
            await self.arrived.wait()
        batch = [self.pending.popleft()]
        deadline = loop.time() + self.max_wait_s
        while True:
            self._take_joinable(batch)
            remaining = deadline - loop.time()
            if len(batch) >= self.max_batch or remaining <= 0:
                break
            self.arrived.clear()
            try:  # an Event, not wait_for(queue.get()): on Python 3.11 a timeout racing a get can drop the item
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                break
        return [item for item in batch if not item[2].done()]  # callers that timed out are gone

    def _take_joinable(self, batch: list) -> None:
        """Move the waiting requests with the batch's key into it, up to max_batch, in arrival order."""
        key, kept = batch[0][1], deque()
        while self.pending:
            item = self.pending.popleft()
            (batch if len(batch) < self.max_batch and item[1] == key else kept).append(item)
        self.pending = kept

    async def _run(self, batch: list) -> None:
        import anyio

        if not batch:
            return
        self.batch_count += 1
        self.batched_requests += len(batch)
        try:  # whatever fails, every caller gets an answer and the loop goes on
            feeds = self.axes.join([f for f, _, _ in batch])
            outputs = await anyio.to_thread.run_sync(self.run, feeds, limiter=self.limiter)
            answers = self.axes.split(outputs, len(batch))
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)


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


def check_batching(session, feeds: dict, artifact) -> BatchAxes:
    """Where the model takes and gives a batch, found on a batch of two copies of `feeds` joined as the batcher
    joins requests: each output's batch axis is the one that doubled (a graph's declared output shapes can be
    wrong: ddddocr's says [1, seqlen] for a [T, N, 8210] answer).
    StartError naming the reason where the model cannot batch, rather than fail every batched call."""
    axes = BatchAxes({s.name: s.batch_axis for s in artifact.inputs})
    if all(axis is None for axis in axes.inputs.values()):
        raise StartError("--max-batch: no input of the model has a batch axis, so requests cannot be joined")
    fixed = fixed_batch(artifact)
    if fixed:
        raise StartError(f"--max-batch: {fixed}: the model runs only at the batch size it was exported with")
    single = session.run(feeds)
    try:
        double = session.run(axes.join([feeds, feeds]))
    except Exception as exc:
        joined = ", ".join(f"{n} on axis {a}" if a is not None else f"{n} not joined" for n, a in axes.inputs.items())
        raise StartError(f"--max-batch: the model failed on a batch of 2 ({joined}): "
                         f"{type(exc).__name__}: {first_line(exc, 200)}") from None
    outputs = []
    for name, one, two in zip(session.output_names, single, double, strict=True):
        axis = doubled_axis(_shape(one), _shape(two))
        if axis is None:
            raise StartError(f"--max-batch: output {name!r} is {_shape_text(one)} for one request and "
                             f"{_shape_text(two)} for a batch of 2: no axis holds the batch, so its answers "
                             f"cannot be split among the requests")
        outputs.append(axis)
    return BatchAxes(axes.inputs, tuple(outputs))


def doubled_axis(one: tuple[int, ...] | None, two: tuple[int, ...] | None) -> int | None:
    """The axis that is twice as long for a batch of two as for one request, every other axis the same (at most
    one axis can be); None where none is: the output does not hold one row a request."""
    if one is None or two is None or len(one) != len(two):
        return None
    grown = [axis for axis, (a, b) in enumerate(zip(one, two, strict=True)) if a != b]
    return grown[0] if len(grown) == 1 and one[grown[0]] > 0 and two[grown[0]] == 2 * one[grown[0]] else None


def fixed_batch(artifact) -> str:
    """Which input of an ONNX model fixes its batch axis at a number, said for the user ("" where none does)."""
    if artifact.format != "onnx":
        return ""  # a torch module: its batch of two says
    from mcbench.optimizer.graph_stats import fixed_batch_inputs

    specs = {s.name: s for s in artifact.inputs}
    names = fixed_batch_inputs(artifact.path, {name: s.batch_axis for name, s in specs.items()})
    if not names:
        return ""
    spec = specs[names[0]]
    return f"input {spec.name!r} has a fixed batch dimension (axis {spec.batch_axis} is {spec.batch} in the model)"


def _shape(output) -> tuple[int, ...] | None:
    return tuple(output.shape) if hasattr(output, "shape") else None  # an ORT sequence output is a list


def _shape_text(output) -> str:
    shape = _shape(output)
    return str(list(shape)) if shape is not None else f"a {type(output).__name__}, not a tensor"
