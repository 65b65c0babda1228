"""Soak: serve a model under Locust load at 80% of its capacity for a while; report memory, errors and p99 drift.

    python -m benchmarks.soak [--minutes 10] [--model model.onnx] [--out soak.json]

1. Serve the model with `bench.launcher.serve_in_subprocess` (its own process, on the server cores).
2. Find its capacity with a short closed-loop ramp (`bench.load.run_load`, users 1-2-4-8): the
   peak throughput of any step.
3. Hold `--fraction` (0.8) of that rate for `--minutes` with Locust at a fixed rate
   (benchmarks/soak_locustfile.py), sampling the server's resident memory (/proc/PID/status VmRSS)
   every few seconds.
4. Report per window (a minute by default): requests, errors, p50 and p99; and overall: memory growth
   (first to last sample, and the least-squares slope), error count, and p99 drift (last window's p99
   over the first's). The JSON goes to `--out`; a summary table to stdout.

Without `--model` it soaks a small MLP (64 -> 256 -> 256 -> 10, ONNX, built here): the figures then
describe the server's own stack (HTTP, decoding, the event loop, one request at a time), which is
what a soak is for. Exit code 0 when there were no errors, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from mcbench.bench.launcher import serve_in_subprocess
from mcbench.bench.load import Endpoint, Requests, run_load
from mcbench.bench.load_plan import UNBOUNDED_P99_MS, LoadPlan
from mcbench.bench.protocol import encode_infer_request
from mcbench.optimizer.hardware import split_cores, usable_cores
from mcbench.optimizer.intake import load_onnx
from mcbench.optimizer.targets import Target
from mcbench.reports.schema import percentile

ROOT = Path(__file__).resolve().parent.parent

LOCUSTFILE = Path(__file__).with_name("soak_locustfile.py")
MODEL_NAME = "soak"


def build_mlp(path: Path) -> Path:
    """A small fixed-weight MLP, so the soak needs no download and does some real arithmetic a request."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    sizes = [64, 256, 256, 10]
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"B{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"B{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process from /proc, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """Samples a process's RSS every `interval_s` seconds until stopped: (seconds since start, bytes)."""

    def __init__(self, pid: int, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.is_set():
            value = rss_bytes(self.pid)
            if value is not None:
                self.samples.append((time.monotonic() - self._t0, value))
            self._stop_event.wait(self.interval_s)

    def stop(self) -> list[tuple[float, int]]:
        self._stop_event.set()
        self.join()
        value = rss_bytes(self.pid)
        if value is not None:
            self.samples.append((time.monotonic() - self._t0, value))
        return self.samples


def find_capacity(url: str, feeds, cores: tuple[list[int], list[int]], step_s: float, work: Path) -> dict:
    """Peak throughput (requests/s) over a closed-loop ramp of 1, 2, 4 and 8 users."""
    server_cores, loadgen_cores = cores
    rules = LoadPlan(step_seconds=step_s, warmup_s=min(1.0, step_s / 4), max_step_seconds=step_s, check_every=0,
                      budget_p99_ms=UNBOUNDED_P99_MS)
    result = run_load(Endpoint(url, MODEL_NAME), Requests.encode([feeds]), [1, 2, 4, 8], [], rules,
                      loadgen_cores=loadgen_cores, server_cores=server_cores, server_threads=len(server_cores),
                      work_dir=work / "ramp")
    peak = max(result.steps, key=lambda s: s.throughput_rps)
    return {
        "steps": [{"users": s.users, "rps": round(s.throughput_rps, 1), "failures": s.failures,
                   "p99_ms": round(s.latency.p99_ms, 3) if s.latency else None} for s in result.steps],
        "capacity_rps": round(peak.throughput_rps, 1),
        "at_users": peak.users,
    }


def hold_rate(url: str, feeds, rate: float, users: int, seconds: float, loadgen_cores: list[int], work: Path,
              server_pid: int, rss_interval_s: float) -> tuple[np.ndarray, list[tuple[float, int]]]:
    """Locust at `rate` requests/s for `seconds`; the per-request records and the server's RSS samples."""
    body, headers = encode_infer_request(feeds, binary=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "request.bin").write_bytes(body)
    samples = work / "soak_samples.npz"
    samples.unlink(missing_ok=True)
    env = {**os.environ, "SOAK_BODY": str(work / "request.bin"), "SOAK_HEADERS": json.dumps(headers),
           "SOAK_PATH": f"/v2/models/{MODEL_NAME}/infer", "SOAK_RATE": str(rate), "SOAK_USERS": str(users),
           "SOAK_SAMPLES": str(samples)}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url, "-u", str(users),
           "-r", str(users), "-t", f"{max(1, round(seconds))}s", "--only-summary", "--loglevel", "WARNING",
           "--exit-code-on-error", "0", "--stop-timeout", "5"]
    sampler = RssSampler(server_pid, rss_interval_s)
    sampler.start()
    log = work / "locust.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=(lambda: os.sched_setaffinity(0, set(loadgen_cores))) if loadgen_cores
                                else None)
        try:
            proc.wait(seconds + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"Locust did not finish within {seconds + 120:.0f} s (log: {log})") from None
        finally:
            rss = sampler.stop()
    if proc.returncode != 0 or not samples.exists():
        raise RuntimeError(f"Locust exited with code {proc.returncode} and wrote no samples (log: {log})")
    with np.load(samples) as data:
        return data["records"], rss


def windows(records: np.ndarray, seconds: float, width_s: float) -> list[dict]:
    """Per window of `width_s` seconds: requests, errors, achieved rate, p50 and p99 of the successful ones.

    A window the load did not cover to its end (the last one, as Locust stops) is marked `full: false`.
    """
    out = []
    start = float(records[:, 0].min()) if len(records) else 0.0
    end = float(records[:, 0].max()) if len(records) else 0.0
    count = max(1, int(np.ceil(seconds / width_s - 1e-9)))
    for i in range(count):
        lo, hi = start + i * width_s, start + (i + 1) * width_s
        chosen = records[(records[:, 0] >= lo) & (records[:, 0] < hi)]
        ok = np.sort(chosen[chosen[:, 2] == 200][:, 1] * 1e3).tolist()
        out.append({
            "window": i, "from_s": round(i * width_s, 1), "full": hi <= end, "requests": len(chosen),
            "errors": int((chosen[:, 2] != 200).sum()), "rps": round(len(chosen) / width_s, 1),
            "p50_ms": round(percentile(ok, 50), 3) if ok else None,
            "p99_ms": round(percentile(ok, 99), 3) if ok else None,
        })
    return out


def memory_summary(rss: list[tuple[float, int]]) -> dict:
    """First, last and peak RSS, growth first-to-last, and the least-squares slope in MiB a minute."""
    if len(rss) < 2:
        return {"samples": len(rss)}
    t = np.array([s[0] for s in rss])
    mib = np.array([s[1] for s in rss]) / 2**20
    slope = float(np.polyfit(t / 60.0, mib, 1)[0]) if np.ptp(t) > 0 else 0.0
    return {"samples": len(rss), "first_mib": round(float(mib[0]), 1), "last_mib": round(float(mib[-1]), 1),
            "peak_mib": round(float(mib.max()), 1), "growth_mib": round(float(mib[-1] - mib[0]), 1),
            "growth_percent": round(float(100 * (mib[-1] - mib[0]) / mib[0]), 2),
            "slope_mib_per_min": round(slope, 3)}


def p99_drift(per_window: list[dict]) -> float | None:
    """Last full window's p99 over the first's, minus one (0.10: 10% slower at the end)."""
    values = [w["p99_ms"] for w in per_window if w["p99_ms"] and w["full"]]
    return round(values[-1] / values[0] - 1.0, 4) if len(values) >= 2 else None


def soak(model: Path, minutes: float, fraction: float, ramp_step_s: float, window_s: float, users: int,
         work: Path) -> dict:
    artifact = load_onnx(model)
    feeds = {s.name: np.random.default_rng(0).standard_normal(s.shape).astype(s.dtype) for s in artifact.inputs}
    server_cores, loadgen_cores = split_cores(sorted(usable_cores()))
    target = Target("onnxruntime").with_threads(len(server_cores))
    spec = work / "server.json"
    spec.write_text(json.dumps({"name": MODEL_NAME, "artifact": artifact.to_dict(), "target": target.to_dict()}))
    seconds = minutes * 60.0
    with serve_in_subprocess(spec, server_cores) as server:
        ramp = find_capacity(server.url, feeds, (server_cores, loadgen_cores), ramp_step_s, work)
        rate = fraction * ramp["capacity_rps"]
        if rate <= 0:
            raise RuntimeError(f"the ramp found no capacity: {ramp}")
        records, rss = hold_rate(server.url, feeds, rate, users, seconds, loadgen_cores, work / "hold", server.pid,
                                 rss_interval_s=min(5.0, max(0.5, seconds / 20)))
    per_window = windows(records, seconds, window_s)
    held = records[:, 0].max() - records[:, 0].min() if len(records) > 1 else 0.0
    errors = int((records[:, 2] != 200).sum())
    return {
        "model": str(model), "minutes": minutes, "fraction": fraction, "server_cores": server_cores,
        "loadgen_cores": loadgen_cores, "cores_shared": bool(set(server_cores) & set(loadgen_cores)),
        "ramp": ramp, "target_rps": round(rate, 1), "users": users,
        "requests": len(records), "achieved_rps": round(len(records) / held, 1) if held else None,
        "errors": errors, "error_statuses": {str(int(k)): int(v) for k, v in
                                             zip(*np.unique(records[records[:, 2] != 200][:, 2], return_counts=True),
                                                 strict=True)},
        "windows": per_window, "p99_drift": p99_drift(per_window), "memory": memory_summary(rss),
        "rss_samples": [(round(t, 2), b) for t, b in rss],
    }


def summary(result: dict) -> str:
    mem = result["memory"]
    lines = [
        f"capacity {result['ramp']['capacity_rps']} req/s (ramp peak at {result['ramp']['at_users']} users); "
        f"held {result['target_rps']} req/s ({result['fraction']:.0%}) for {result['minutes']} min "
        f"with {result['users']} users: achieved {result['achieved_rps']} req/s",
        f"requests {result['requests']}, errors {result['errors']} {result['error_statuses'] or ''}".rstrip(),
        f"server RSS {mem.get('first_mib')} -> {mem.get('last_mib')} MiB (peak {mem.get('peak_mib')}, growth "
        f"{mem.get('growth_mib')} MiB, {mem.get('growth_percent')}%, slope {mem.get('slope_mib_per_min')} MiB/min, "
        f"{mem['samples']} samples)",
        f"p99 drift first -> last window: {result['p99_drift']}",
        "window  from_s  requests  errors     rps   p50 ms   p99 ms  (* partial window)",
    ]
    for w in result["windows"]:
        lines.append(f"{w['window']:>6}  {w['from_s']:>6}  {w['requests']:>8}  {w['errors']:>6}  {w['rps']:>6}  "
                     f"{w['p50_ms']!s:>7}  {w['p99_ms']!s:>7}{'' if w['full'] else '  *'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to hold the load (default 10)")
    parser.add_argument("--fraction", type=float, default=0.8, help="share of the measured capacity to hold")
    parser.add_argument("--model", type=Path, help="an ONNX model (default: a small MLP built here)")
    parser.add_argument("--ramp-step-seconds", type=float, default=5.0, help="seconds per ramp step")
    parser.add_argument("--window-seconds", type=float, default=60.0, help="width of a reporting window")
    parser.add_argument("--users", type=int, default=8, help="Locust users sharing the fixed rate")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or not 0 < args.fraction <= 1 or args.users < 1 or args.window_seconds <= 0:
        parser.error("need --minutes > 0, 0 < --fraction <= 1, --users >= 1, --window-seconds > 0")
    with tempfile.TemporaryDirectory(prefix="mcbench-soak-") as tmp:
        work = Path(tmp)
        model = args.model or build_mlp(work / "mlp.onnx")
        result = soak(model, args.minutes, args.fraction, args.ramp_step_seconds, args.window_seconds, args.users,
                      work)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    print(summary(result))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
