"""The load stage: Locust, in its own process and on its own cores, drives a served model step by step.

This module never imports locust (importing it patches the process with gevent); it starts
`locust -f bench/locustfile.py` and reads back the per-request records and Locust's own totals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.protocol import encode_infer_request
from reports.schema import LatencyStats, LoadResult, LoadStep

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_ALLOWANCE_S = 60.0


def run_load(
    url: str,
    model_name: str,
    feeds: dict[str, np.ndarray],
    steps: list[tuple[int, float]],
    loadgen_cores: list[int] | None,
    server_cores: list[int] | None,
    server_threads: int,
    work_dir: Path,
    warmup_s: float = 1.0,
) -> LoadResult:
    """Run the steps against `url` and return per-step throughput and microsecond latency percentiles."""
    work_dir.mkdir(parents=True, exist_ok=True)
    body, headers = encode_infer_request(feeds, binary=True)
    (work_dir / "request.bin").write_bytes(body)
    samples_path, json_path = work_dir / "locust_samples.npy", work_dir / "locust_stats.json"
    samples_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "MCBENCH_BODY": str(work_dir / "request.bin"),
        "MCBENCH_HEADERS": json.dumps(headers),
        "MCBENCH_PATH": f"/v2/models/{model_name}/infer",
        "MCBENCH_STEPS": ",".join(f"{u}:{s}" for u, s in steps),
        "MCBENCH_SAMPLES": str(samples_path),
    }
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
           "--only-summary", "--loglevel", "WARNING", "--json-file", str(json_path.with_suffix(""))]
    total = sum(s for _, s in steps)
    cpu_percent = _run_locust(cmd, env, loadgen_cores, total, work_dir / "locust.log")
    if not samples_path.exists():
        raise RuntimeError(f"Locust wrote no samples (log: {work_dir / 'locust.log'})")
    records = np.load(samples_path)
    totals = _locust_totals(json_path)
    return LoadResult(
        steps=step_results(records, steps, warmup_s),
        server_cores=list(server_cores or []),
        loadgen_cores=list(loadgen_cores or []),
        cores_shared=not server_cores or not loadgen_cores or bool(set(server_cores) & set(loadgen_cores)),
        server_threads=server_threads,
        locust_total_requests=totals[0],
        locust_total_failures=totals[1],
        loadgen_cpu_percent=cpu_percent,
    )


def _run_locust(
    cmd: list[str], env: dict[str, str], cores: list[int] | None, total_s: float, log: Path
) -> float | None:
    """Run Locust to completion; returns its CPU use (percent of one core) over the steps, sampled."""
    import psutil

    def pin() -> None:
        if cores:
            os.sched_setaffinity(0, set(cores))

    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin)
    watched = psutil.Process(proc.pid)
    readings: list[tuple[float, float]] = []  # (wall, cpu seconds)
    deadline = time.monotonic() + total_s + STARTUP_ALLOWANCE_S
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"Locust did not finish within {total_s + STARTUP_ALLOWANCE_S:.0f} s (log: {log})")
        try:
            t = watched.cpu_times()
            readings.append((time.monotonic(), t.user + t.system))
        except psutil.Error:
            pass
        time.sleep(0.25)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:].strip()
        raise RuntimeError(f"Locust exited with code {proc.returncode}: {tail}")
    return _cpu_percent(readings, total_s)


def _cpu_percent(readings: list[tuple[float, float]], total_s: float) -> float | None:
    """CPU use over the last `total_s` seconds before Locust exited: the steps, not its start-up."""
    if len(readings) < 2:
        return None
    end = readings[-1][0]
    window = [r for r in readings if r[0] >= end - total_s + 0.5]
    if len(window) < 2 or window[-1][0] <= window[0][0]:
        return None
    return 100.0 * (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])


def step_results(records: np.ndarray, steps: list[tuple[int, float]], warmup_s: float) -> list[LoadStep]:
    """Per step, the requests that started after its warm-up: rate, failures by kind, latency percentiles."""
    results, step_start = [], 0.0
    for users, seconds in steps:
        lo, hi = step_start + warmup_s, step_start + seconds
        step_start = hi
        rows = records[(records[:, 0] >= lo) & (records[:, 0] < hi)]
        ok = rows[rows[:, 2] == 200]
        failed = rows[rows[:, 2] != 200]
        errors: dict[str, int] = {}
        for status in failed[:, 2].astype(int):
            kind = f"HTTP {status}" if status else "no response"
            errors[kind] = errors.get(kind, 0) + 1
        results.append(LoadStep(
            users=users,
            duration_s=hi - lo,
            requests=len(rows),
            failures=len(failed),
            throughput_rps=len(ok) / (hi - lo),
            latency=LatencyStats.from_seconds(ok[:, 1].tolist(), keep_samples=False) if len(ok) else None,
            errors=errors,
        ))
    return results


def _locust_totals(json_path: Path) -> tuple[int, int]:
    """Locust's own request and failure counts (its --json-file), as a cross-check of the records."""
    if not json_path.exists():
        return 0, 0
    entries = json.loads(json_path.read_text())
    return sum(e.get("num_requests", 0) for e in entries), sum(e.get("num_failures", 0) for e in entries)
