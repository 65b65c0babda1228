"""What the HTTP path and the load generator themselves cost, on the demo model.

1. HTTP overhead: p50 of one closed-loop user over HTTP (mcbench's server, onnxruntime, 1 thread,
   pinned to core 0; Locust pinned to core 1) minus p50 of the same model in-process (same runtime,
   same thread count, pinned to the same core).
2. The highest request rate one Locust worker process sustains on one core: a closed loop of many
   users against the same server, with the generator's CPU use read from its process. Where the
   generator reached 90% of its core, the achieved rate is its ceiling; where the server saturated
   first, the ceiling is extrapolated as achieved rate / generator CPU share, and printed as such.

    python benchmarks/load.py [--seconds 10] [--users 16] [--run RUN_DIR]

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def demo_onnx(folder: Path, run_dir: Path | None):
    from mcbench.demo import DEMO_FACTORY, INPUT_NAME, INPUT_SHAPE, digits_cnn
    from optimizer.artifact import Artifact, InputSpec
    from optimizer.passes import PassContext, apply_passes

    spec = InputSpec(INPUT_NAME, INPUT_SHAPE, "float32")
    if run_dir is not None:
        from reports.schema import load_results

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

    from optimizer.targets import Target, open_session

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


def main(argv: list[str] | None = None) -> int:
    from bench.load import Endpoint, Requests, StepRules, run_load
    from bench.server import serve_in_subprocess
    from optimizer.targets import Target

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=16)
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
        rules = StepRules(seconds=args.seconds, warmup_s=2, max_seconds=args.seconds, check_every=0)
        with serve_in_subprocess(spec, [server_core]) as server:
            result = run_load(Endpoint(server.url, "digits"), Requests.encode(feeds), [1, args.users], [], rules,
                              [gen_core], [server_core], 1, folder / "load")
    one, many = result.steps[0], result.steps[-1]
    cpu = many.loadgen_cpu_percent or 0.0
    saturated = cpu >= 90.0
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
    }
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
