"""Where the model server's calls run: on the event loop, in a worker thread, or joined into batches.

Inference runs one call at a time in a worker thread, except for a model faster than `--inline-below-ms` (median of
its warm-up calls, measured_dispatch): that one runs on the event loop itself, because handing a call to a thread and
back costs more than the call. Measured on the 2-core VM with the demo CNN (0.03 ms a call): the handoff cost about
0.3 ms of server CPU a request, and serving inline took the closed-loop peak from 994 to 1,406 req/s. Every request
has the model's exact input shape (others are a 400), so the warm-up time is what each call holds the loop for. An
inline call is not cut short by `--timeout-s`, but it yields to the loop once before it runs, so the queue bound holds
for the requests that arrived with it; those that arrive while it holds the loop wait in the socket backlog until it
ends. With `--max-batch N` (N > 1) a Batcher joins up to N queued requests, waiting at most `--max-wait-ms` for them,
into one call along axis 0 (always in the thread). With `--instances N` the server holds N sessions of the model and
runs up to N calls (or batches) at once, each in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from mcbench.bench.guards import StartError


class Batcher:
    """Joins queued requests into one model call along axis 0 (dynamic batching), then splits the answers."""

    def __init__(self, run, max_batch: int, max_wait_s: float, limiter, instances: int = 1) -> None:
        self.run, self.max_batch, self.max_wait_s, self.limiter = run, max_batch, max_wait_s, limiter
        self.instances = instances  # batches run at once, one an instance; the next fills while all are busy
        self.queue: asyncio.Queue | None = None  # made on the first request, on the server's event loop
        self.arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
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


def check_batching(session, feeds: dict) -> None:
    """Refuse --max-batch on a model whose batch dimension is fixed, rather than fail every batched call."""
    import numpy as np

    try:
        session.run({name: np.concatenate([value] * 2) for name, value in feeds.items()})
    except Exception as exc:
        raise StartError(f"--max-batch needs a model with a variable batch dimension (axis 0): "
                         f"a batch of 2 failed with {type(exc).__name__}") from None
