"""The Locust test mcbench runs: the only module that imports locust (it patches the process with gevent).

Run by bench.load as `locust -f bench/locustfile.py --headless ...` with its settings in the environment:
MCBENCH_BODY (file with the pre-encoded request), MCBENCH_HEADERS (JSON), MCBENCH_PATH (URL path),
MCBENCH_STEPS ("users:seconds,..."), MCBENCH_SAMPLES (where to write the per-request records).

Locust's own statistics round response times to about two significant figures (whole milliseconds
below 100 ms); each request is also recorded here at perf_counter resolution, with the step it
started in, and written out as a numpy array when the test stops.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from locust import FastHttpUser, LoadTestShape, events, task

BODY = open(os.environ["MCBENCH_BODY"], "rb").read() if "MCBENCH_BODY" in os.environ else b""
HEADERS = json.loads(os.environ.get("MCBENCH_HEADERS", "{}"))
PATH = os.environ.get("MCBENCH_PATH", "/")
STEPS = [(int(u), float(s)) for u, s in (p.split(":") for p in os.environ.get("MCBENCH_STEPS", "1:1").split(","))]
SAMPLES = os.environ.get("MCBENCH_SAMPLES", "")

# one row per request: start (s since the test started), latency (s), HTTP status (0: no response)
_records: list[tuple[float, float, int]] = []
_clock = {"t0": time.perf_counter()}


@events.test_start.add_listener
def _started(**_kwargs) -> None:
    _clock["t0"] = time.perf_counter()


@events.quitting.add_listener
def _write_records(**_kwargs) -> None:
    if SAMPLES:
        np.save(SAMPLES, np.array(_records, dtype=np.float64).reshape(-1, 3))


class StepShape(LoadTestShape):
    """Hold each step's user count for its seconds, then stop."""

    def tick(self) -> tuple[int, float] | None:
        elapsed, end = self.get_run_time(), 0.0
        for users, seconds in STEPS:
            end += seconds
            if elapsed < end:
                return users, max(100.0, users * 10.0)
        return None


class InferUser(FastHttpUser):
    """Closed loop: send the next request as soon as the previous one answered."""

    @task
    def infer(self) -> None:
        start = time.perf_counter()
        with self.client.post(PATH, data=BODY, headers=HEADERS, catch_response=True) as response:
            latency = time.perf_counter() - start
            status = response.status_code or 0
            if status != 200:
                response.failure(f"HTTP {status}")
        _records.append((start - _clock["t0"], latency, status))
