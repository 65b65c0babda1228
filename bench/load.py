"""The load stage: Locust, in its own process and on its own cores, drives a served model step by step.

This module never imports locust (importing it patches the process with gevent); it starts
`locust -f bench/locustfile.py` and reads back the per-request records and Locust's own totals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.protocol import encode_infer_request
from reports.schema import LatencyStats, LoadResult, LoadStep

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_ALLOWANCE_S = 60.0


@dataclass
class Records:
    """What the locustfile wrote: one row a request, and when each step really began (plus the end)."""

    step: np.ndarray  # step index at the request's start
    start_s: np.ndarray  # seconds since the first step began
    latency_s: np.ndarray
    status: np.ndarray  # HTTP status, 0 where no response came
    error: np.ndarray  # index into error_kinds, 0 for none
    error_kinds: list[str]
    boundary_s: np.ndarray  # len(steps) + 1 wall times
    boundary_cpu_s: np.ndarray  # the load generator's CPU seconds at those times

    @classmethod
    def load(cls, path: Path) -> Records:
        with np.load(path) as data:
            rows, bounds = data["records"], data["boundaries"]
            kinds = [str(k) for k in data["error_kinds"]]
        return cls(rows[:, 0].astype(int), rows[:, 1], rows[:, 2], rows[:, 3].astype(int), rows[:, 4].astype(int),
                   kinds, bounds[:, 0], bounds[:, 1])


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
    """Run the steps against `url` and return per-step throughput and microsecond latency percentiles.

    Latency samples are not kept in the result (a step at thousands of requests a second would bloat
    results.json); every request's record stays in `work_dir/locust_samples.npz`.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    body, headers = encode_infer_request(feeds, binary=True)
    (work_dir / "request.bin").write_bytes(body)
    samples_path, json_path = work_dir / "locust_samples.npz", work_dir / "locust_stats.json"
    samples_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "MCBENCH_BODY": str(work_dir / "request.bin"),
        "MCBENCH_HEADERS": json.dumps(headers),
        "MCBENCH_PATH": f"/v2/models/{model_name}/infer",
        "MCBENCH_STEPS": ",".join(f"{u}:{s}" for u, s in steps),
        "MCBENCH_SAMPLES": str(samples_path),
    }
    # --exit-code-on-error 0: failed requests are data (counted per step), not a failed run
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
           "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
           "--json-file", str(json_path.with_suffix("")), "--csv", str(work_dir / "locust")]
    log = work_dir / "locust.log"
    _run_locust(cmd, env, loadgen_cores, sum(s for _, s in steps) + STARTUP_ALLOWANCE_S, log)
    if not samples_path.exists():
        raise RuntimeError(f"Locust wrote no samples: {_tail(log)}")
    records = Records.load(samples_path)
    if len(records.step) == 0 or len(records.boundary_s) < len(steps) + 1:
        raise RuntimeError(f"Locust recorded {len(records.step)} requests over {len(records.boundary_s) - 1} "
                           f"of {len(steps)} steps: {_tail(log)}")
    totals = _locust_totals(json_path)
    return LoadResult(
        steps=step_results(records, [u for u, _ in steps], warmup_s),
        server_cores=list(server_cores or []),
        loadgen_cores=list(loadgen_cores or []),
        cores_shared=not server_cores or not loadgen_cores or bool(set(server_cores) & set(loadgen_cores)),
        server_threads=server_threads,
        locust_total_requests=totals[0],
        locust_total_failures=totals[1],
        loadgen_cpu_percent=busiest_step_cpu_percent(records),
    )


def _run_locust(cmd: list[str], env: dict[str, str], cores: list[int] | None, timeout_s: float, log: Path) -> None:
    """Run Locust to completion on `cores`, its output in `log`."""

    def pin() -> None:
        if cores:
            os.sched_setaffinity(0, set(cores))

    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"Locust did not finish within {timeout_s:.0f} s: {_tail(log)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"Locust exited with code {proc.returncode}: {_tail(log)}")


def _tail(log: Path, chars: int = 1500) -> str:
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    return f"{text[-chars:]} (log: {log})" if text else f"no output (log: {log})"


def step_results(records: Records, users: list[int], warmup_s: float) -> list[LoadStep]:
    """Per step, the requests that started after its warm-up: rate, failures by kind, latency percentiles.

    A step's window runs from warmup_s after it really began to when the next one began, so the
    rate divides by the time the load was actually held, not the nominal step length.
    """
    results = []
    for index, count in enumerate(users):
        lo, hi = records.boundary_s[index] + warmup_s, records.boundary_s[index + 1]
        window = max(hi - lo, 1e-9)
        chosen = (records.step == index) & (records.start_s >= lo)
        ok = chosen & (records.status == 200)
        failed_codes = records.error[chosen & ~ok]
        codes, counts = np.unique(failed_codes, return_counts=True)
        results.append(LoadStep(
            users=count,
            duration_s=round(window, 6),
            requests=int(chosen.sum()),
            failures=len(failed_codes),
            throughput_rps=int(ok.sum()) / window,
            latency=LatencyStats.from_seconds(records.latency_s[ok].tolist(), keep_samples=False) if ok.any() else None,
            errors={records.error_kinds[c] or "unknown": int(n) for c, n in zip(codes, counts, strict=True)},
        ))
    return results


def busiest_step_cpu_percent(records: Records) -> float | None:
    """The load generator's CPU use in its busiest step, as percent of one core (Locust runs on one)."""
    wall, cpu = np.diff(records.boundary_s), np.diff(records.boundary_cpu_s)
    usable = wall > 0
    return float(np.max(100.0 * cpu[usable] / wall[usable])) if usable.any() else None


def _locust_totals(json_path: Path) -> tuple[int, int]:
    """Locust's own request and failure counts (its --json-file), as a cross-check of the records."""
    if not json_path.exists():
        return 0, 0
    entries = json.loads(json_path.read_text())
    return sum(e.get("num_requests", 0) for e in entries), sum(e.get("num_failures", 0) for e in entries)
