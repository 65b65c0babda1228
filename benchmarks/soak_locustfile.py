"""The Locust test of benchmarks/soak.py: a fixed request rate, every request recorded.

Run as `locust -f benchmarks/soak_locustfile.py --headless -u USERS -r USERS -t SECONDS` with
SOAK_BODY (file with the encoded request), SOAK_HEADERS (JSON), SOAK_PATH, SOAK_RATE (requests a
second in all) and SOAK_SAMPLES (.npz the records go to when Locust quits). Each of the USERS
users paces itself with constant_throughput(SOAK_RATE / USERS): an open-ish loop at a fixed total
rate, as long as the server keeps up.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from locust import FastHttpUser, constant_throughput, events, task

BODY = Path(os.environ["SOAK_BODY"]).read_bytes() if "SOAK_BODY" in os.environ else b""
HEADERS = json.loads(os.environ.get("SOAK_HEADERS", "{}"))
PATH = os.environ.get("SOAK_PATH", "/")
RATE = float(os.environ.get("SOAK_RATE", "1"))
USERS = int(os.environ.get("SOAK_USERS", "1"))
SAMPLES = os.environ.get("SOAK_SAMPLES", "")

_t0 = time.perf_counter()
_records: list[tuple[float, float, int]] = []  # start (s since Locust started), latency (s), HTTP status (0: none)


@events.quitting.add_listener
def _write_records(**_kwargs) -> None:
    if SAMPLES:
        tmp = Path(SAMPLES).with_suffix(".part.npz")
        np.savez(tmp, records=np.array(_records, dtype=np.float64).reshape(-1, 3))
        tmp.replace(SAMPLES)


class PacedUser(FastHttpUser):
    wait_time = constant_throughput(RATE / USERS)

    @task
    def infer(self) -> None:
        start = time.perf_counter()
        with self.client.post(PATH, data=BODY, headers=HEADERS, catch_response=True) as response:
            latency = time.perf_counter() - start
            status = response.status_code or 0
            if status != 200:
                response.failure(f"HTTP {status}" if status else type(response.error).__name__)
        _records.append((start - _t0, latency, status))
