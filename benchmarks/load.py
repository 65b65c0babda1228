"""What the HTTP path and the load generator themselves cost, on the demo model.

1. HTTP overhead: p50 of one closed-loop user over HTTP (mcbench's server, onnxruntime, 1 thread,
   pinned to core 0; Locust pinned to core 1) minus p50 of the same model in-process (same runtime,
   same thread count, pinned to the same core).
2. The highest request rate one Locust worker process sustains on one core: a closed loop of many
   users against the same server, with the generator's CPU use read from its process. Where the
   generator reached 90% of its core, the achieved rate is its ceiling; where the server saturated
   first, the ceiling is extrapolated as achieved rate / generator CPU share, and printed as such.
3. What the server's dispatch costs: the same steps (and one open-loop step at `--rate`) with model
   calls in a worker thread and on the event loop (`--inline-below-ms`), one server after the other
   in the same run, with the server's CPU seconds a request read from /proc.

    python -m benchmarks.load [--seconds 10] [--users 16] [--rate 800] [--run RUN_DIR]

The demo CNN's graph is exported untrained (the same operators and shapes, so the same cost) unless
`--run` names a finished demo run whose `ort-fp32` artifact is used. Figures are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def demo_onnx(folder: Path, run_dir: Path | None):
    from mcbench.demo import DEMO_FACTORY, INPUT_NAME, INPUT_SHAPE, digits_cnn
    from mcbench.optimizer.artifact import Artifact, InputSpec
    from mcbench.optimizer.passes import PassContext, apply_passes

    spec = InputSpec(INPUT_NAME, INPUT_SHAPE, "float32")
    if run_dir is not None:
        from mcbench.reports.schema import load_results

        manifest = load_results(run_dir / "results.json").variant("ort-fp32").artifact
        return Artifact(Path(manifest["path"]), "onnx", (spec,))
    import torch

    weights = folder / "untrained.pt"
    torch.save(digits_cnn().state_dict(), weights)
    base = Artifact(weights, "torch", (spec,), factory=DEMO_FACTORY)
    return apply_passes(base, ("export.onnx",), PassContext(), folder / "onnx")


def in_process_p50_ms(artifact, core: int, seconds: float) -> float:
    """Median of back-to-back single inferences, pinned to `core`, one runtime thread."""
    import time

    from mcbench.optimizer.targets import Target, open_session

    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        session = open_session(artifact, Target("onnxruntime", threads=1))
        feeds = {s.name: s.sample(np.random.default_rng(0)) for s in artifact.inputs}
        for _ in range(200):
            session.run(feeds)
        samples, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            session.run(feeds)
            samples.append(time.perf_counter() - t)
    finally:
        os.sched_setaffinity(0, affinity)
    return float(np.median(samples) * 1e3)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_and_load(spec: Path, dispatch: str, server_core: int, gen_core: int, feeds, users: list[int],
                   rate: float, rules, work: Path) -> dict:
    """One server with model calls in `dispatch` ("thread" or "inline"), its closed steps and one open step."""
    from mcbench.bench.launcher import serve_in_subprocess
    from mcbench.bench.load import Endpoint, Requests, run_load

    extra = ["--inline-below-ms", "0" if dispatch == "thread" else "1000"]
    with serve_in_subprocess(spec, [server_core], extra=extra) as server:
        assert server.dispatch == dispatch, f"asked for {dispatch}, the server chose {server.dispatch}"
        cpu0 = cpu_seconds(server.pid)
        result = run_load(Endpoint(server.url, "digits"), Requests.encode(feeds), users, [rate] if rate else [],
                          rules, [gen_core], [server_core], 1, work)
        cpu = cpu_seconds(server.pid) - cpu0
    steps = result.steps + result.open_steps
    answered = sum(s.requests - s.failures for s in steps)
    return {
        "steps": [{"loop": s.mode, "level": s.offered_rps if s.mode == "open" else s.users,
                   "achieved_rps": round(s.throughput_rps, 1), "p50_ms": round(s.latency.p50_ms, 3),
                   "p99_ms": round(s.latency.p99_ms, 3), "failures": s.failures, "stable": s.stable,
                   "loadgen_cpu_percent": round(s.loadgen_cpu_percent or 0.0, 1)} for s in steps],
        "server_cpu_ms_per_request": round(cpu / max(answered, 1) * 1e3, 3),
        "result": result,
    }


def main(argv: list[str] | None = None) -> int:
    from mcbench.bench.load_plan import UNBOUNDED_P99_MS, LoadPlan
    from mcbench.optimizer.targets import Target

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--rate", type=float, default=800.0, help="the open-loop step's rate (0: none)")
    parser.add_argument("--run", type=Path, help="a finished demo run whose ort-fp32 artifact to use")
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    server_core, gen_core = cores[0], cores[-1]
    with tempfile.TemporaryDirectory(prefix="mcbench-bench-load-") as tmp:
        folder = Path(tmp)
        artifact = demo_onnx(folder, args.run)
        in_process = in_process_p50_ms(artifact, server_core, args.seconds)
        spec = folder / "server.json"
        spec.write_text(json.dumps({"name": "digits", "artifact": artifact.to_dict(),
                                    "target": Target("onnxruntime", threads=1).to_dict()}))
        feeds = [{s.name: s.sample(np.random.default_rng(i)) for s in artifact.inputs} for i in range(8)]
        rules = LoadPlan(step_seconds=args.seconds, warmup_s=2, max_step_seconds=args.seconds, check_every=0,
                         budget_p99_ms=UNBOUNDED_P99_MS)
        runs = {d: serve_and_load(spec, d, server_core, gen_core, feeds, [1, args.users], args.rate, rules,
                                  folder / d) for d in ("thread", "inline")}
    one, many = runs["inline"]["result"].steps[0], runs["inline"]["result"].steps[-1]
    cpu = many.loadgen_cpu_percent or 0.0
    saturated = cpu >= 90.0
    peak = {d: r["result"].steps[-1].throughput_rps for d, r in runs.items()}
    figures = {
        "in_process_p50_ms": round(in_process, 4),
        "http_p50_ms_one_user": round(one.latency.p50_ms, 4),
        "http_overhead_p50_ms": round(one.latency.p50_ms - in_process, 4),
        "users": many.users,
        "achieved_rps": round(many.throughput_rps, 1),
        "loadgen_cpu_percent": round(cpu, 1),
        "one_worker_max_rps": round(many.throughput_rps if saturated else many.throughput_rps / (cpu / 100), 1),
        "one_worker_max_rps_is": "measured (generator saturated)" if saturated
        else "extrapolated: achieved rate / generator CPU share (the server saturated first)",
        "server_core": server_core, "loadgen_core": gen_core, "cores_shared": server_core == gen_core,
        "steps_stable": [one.stable, many.stable],
        "dispatch": {d: {k: v for k, v in r.items() if k != "result"} for d, r in runs.items()},
        "closed_peak_inline_over_thread": round(peak["inline"] / peak["thread"], 3) if peak["thread"] else None,
    }
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
