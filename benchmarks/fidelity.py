"""Does mcbench's in-process timer agree with OpenVINO's own benchmark_app?

Exports the ResNet-18-like reference model to ONNX, then alternates, round by round (A B, B A, ...), between
`benchmark_app` (latency hint, same threads, FP32) and mcbench's timer (`bench.latency.measure_latency`
on a session from `optimizer.targets.open_session` with the same settings) on the same file. The
machine is shared and noisy, so rounds are interleaved and the ratio of medians is what is reported.

Not benchmarks.harness (the interleaved rounds every other side-by-side benchmark uses): one side is another
program, benchmark_app, that runs the model in its own process and times itself; what is compared is the two
instruments' readings, so each round runs each instrument whole, in turn.

    python -m benchmarks.fidelity [--rounds 10] [--seconds 5] [--threads 1]

One thread by default: on a shared 2-vCPU machine a 2-thread inference waits for whichever vCPU the
host has descheduled, and that noise (rounds from 0.6x to 1.4x of each other here) swamps a
3% comparison; with one thread the two instruments see the same machine. `--threads 2` runs the
same comparison with both cores.

Exit code 0 when the ratio of medians lies within 0.97-1.03, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mcbench.bench.latency import TimingPlan, measure_latency
from mcbench.models import RESNET18_FACTORY, RESNET18_INPUT
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.passes import PassContext, apply_passes
from mcbench.optimizer.targets import Target, open_session

MEDIAN_LINE = re.compile(r"Median:\s+([0-9.]+)\s*ms")


def export_reference(work: Path) -> Artifact:
    import torch

    from mcbench.models import resnet18_like

    weights = work / "resnet18_like.pt"
    torch.save(resnet18_like().state_dict(), weights)
    name, shape = RESNET18_INPUT
    base = Artifact(weights, "torch", (InputSpec(name, shape),), factory=RESNET18_FACTORY)
    return apply_passes(base, ("export.onnx",), PassContext(), work)


def benchmark_app_median_ms(model: Path, threads: int, seconds: float) -> float:
    """benchmark_app refuses -nthreads beside -hint, so the thread count and precision go in -load_config."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    config = model.with_name("benchmark_app_config.json")
    config.write_text(json.dumps({"CPU": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads),
                                          "INFERENCE_PRECISION_HINT": "f32"}}))
    cmd = [exe, "-m", str(model), "-d", "CPU", "-hint", "latency", "-load_config", str(config), "-t", str(int(seconds))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = MEDIAN_LINE.search(out)
    if not match:
        raise RuntimeError(f"no 'Median:' line in benchmark_app's output:\n{out[-2000:]}")
    return float(match.group(1))


def mcbench_median_ms(artifact: Artifact, threads: int, seconds: float) -> float:
    target = Target("openvino", threads=threads, options={"hint": "LATENCY", "precision": "f32"})
    session = open_session(artifact, target)
    feeds = {s.name: s.sample(np.random.default_rng(0)) for s in artifact.inputs}
    plan = TimingPlan(warmup_runs=10, min_runs=50, min_seconds=seconds, max_seconds=seconds)
    stats, _ = measure_latency(session, feeds, plan)
    return stats.p50_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="inference threads for both instruments (default 1: see the module docstring)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = export_reference(Path(tmp))
        print(f"model: ResNet-18-like, {RESNET18_INPUT[1]}, OpenVINO CPU FP32, latency hint, {args.threads} threads")
        print(f"{'round':>5}  {'benchmark_app p50 ms':>20}  {'mcbench p50 ms':>14}  {'ratio':>6}")
        ours, theirs = [], []
        for i in range(1, args.rounds + 1):
            # A B, then B A: a drift in the machine's load hits both instruments alike
            if i % 2:
                theirs.append(benchmark_app_median_ms(artifact.path, args.threads, args.seconds))
                ours.append(mcbench_median_ms(artifact, args.threads, args.seconds))
            else:
                ours.append(mcbench_median_ms(artifact, args.threads, args.seconds))
                theirs.append(benchmark_app_median_ms(artifact.path, args.threads, args.seconds))
            print(f"{i:>5}  {theirs[-1]:>20.2f}  {ours[-1]:>14.2f}  {ours[-1] / theirs[-1]:>6.3f}")
    ratio = statistics.median(ours) / statistics.median(theirs)
    ratios = sorted(o / t for o, t in zip(ours, theirs, strict=True))
    print(f"median of mcbench medians / median of benchmark_app medians: {ratio:.3f}")
    print(f"per-round ratios: median {statistics.median(ratios):.3f}, range {ratios[0]:.3f}-{ratios[-1]:.3f}")
    ok = 0.97 <= ratio <= 1.03
    print("within 0.97-1.03" if ok else "OUTSIDE 0.97-1.03")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
