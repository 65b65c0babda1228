"""The Locust test mcbench runs: the only module that imports locust (it patches the process with gevent).

Run by bench.load as `locust -f bench/locustfile.py --headless ...` with its settings in the environment:
MCBENCH_BODY (file with the pre-encoded request), MCBENCH_HEADERS (JSON), MCBENCH_PATH (URL path),
MCBENCH_STEPS ("users:seconds,..."), MCBENCH_SAMPLES (the .npz file the per-request records go to).

Locust's own statistics round response times to about two significant figures (whole milliseconds
below 100 ms); each request is also recorded here at perf_counter resolution and written out when
Locust quits. Locust calls the shape's tick() about once a second, so a step starts up to a second
after its nominal time: each request is tagged with the step the shape was in when it started, and
the shape records when each step really began and how much CPU this process had used by then.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from locust import FastHttpUser, LoadTestShape, constant, events, task

BODY = Path(os.environ["MCBENCH_BODY"]).read_bytes() if "MCBENCH_BODY" in os.environ else b""
HEADERS = json.loads(os.environ.get("MCBENCH_HEADERS", "{}"))
PATH = os.environ.get("MCBENCH_PATH", "/")
STEPS = [(int(u), float(s)) for u, s in (p.split(":") for p in os.environ.get("MCBENCH_STEPS", "1:1").split(","))]
SAMPLES = os.environ.get("MCBENCH_SAMPLES", "")

# one row a request: step index, start (s since the first step began), latency (s), HTTP status (0: none), error code
_records: list[tuple[int, float, float, int, int]] = []
_error_kinds: list[str] = [""]  # error code -> kind; 0 is "no error"
# one row a step boundary (and one for the end): wall time since the first step began, process CPU seconds
_boundaries: list[tuple[float, float]] = []
_state = {"step": -1, "t0": 0.0}


def _error_code(kind: str) -> int:
    if kind not in _error_kinds:
        _error_kinds.append(kind)
    return _error_kinds.index(kind)


@events.quitting.add_listener
def _write_records(**_kwargs) -> None:
    if not SAMPLES:
        return
    tmp = Path(SAMPLES).with_suffix(".part.npz")
    np.savez(
        tmp,
        records=np.array(_records, dtype=np.float64).reshape(-1, 5),
        boundaries=np.array(_boundaries, dtype=np.float64).reshape(-1, 2),
        error_kinds=np.array(_error_kinds, dtype=str),
    )
    tmp.replace(SAMPLES)


class StepShape(LoadTestShape):
    """Hold each step's user count for its seconds (all users spawned at once), then stop."""

    def tick(self) -> tuple[int, float] | None:
        elapsed, end = self.get_run_time(), 0.0
        for index, (users, seconds) in enumerate(STEPS):
            end += seconds
            if elapsed < end:
                self._enter(index)
                return users, float(max(users, 1) * 1000)
        self._enter(len(STEPS))
        return None

    def _enter(self, index: int) -> None:
        if index == _state["step"]:
            return
        now = time.perf_counter()
        if not _boundaries:
            _state["t0"] = now
        _boundaries.append((now - _state["t0"], time.process_time()))
        _state["step"] = index


class InferUser(FastHttpUser):
    """Closed loop: send the next request as soon as the previous one answered."""

    wait_time = constant(0)

    @task
    def infer(self) -> None:
        step, start = _state["step"], time.perf_counter()
        with self.client.post(PATH, data=BODY, headers=HEADERS, catch_response=True) as response:
            latency = time.perf_counter() - start
            status = response.status_code or 0
            if status == 200:
                kind = ""
            else:
                kind = f"HTTP {status}" if status else type(response.error).__name__
                response.failure(kind)
        _records.append((step, start - _state["t0"], latency, status, _error_code(kind)))
