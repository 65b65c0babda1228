"""Calibrate `mcbench gate` on this machine with real measurements: how often does it cry wolf, how often does it
catch a real slowdown?

    .venv/bin/python benchmarks/gate_calibration.py [--pairs 20] [--rounds 8] [--runs 50]

(a) A/A: one ONNX model in two separate onnxruntime sessions, measured interleaved (A B A B, as `--remeasure`
    does), `pairs` times; every exit 1 (regression) or 3 (inconclusive) is a false alarm.
(b) A/B: the same, with B's session busy-waiting an extra 10% / 20% of the baseline median after each run;
    the detection rate is the share of pairs that exit 1.
Target: at most 1 false alarm in 20 A/A pairs and a 20% slowdown caught in at least 19 of 20.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcbench.bench.latency import TimingPlan, measure_latency  # noqa: E402
from mcbench.optimizer.artifact import Artifact, InputSpec, generated_inputs  # noqa: E402
from mcbench.optimizer.targets import Target, open_session  # noqa: E402
from mcbench.remeasure import ROUND_PLAN, interleaved_samples  # noqa: E402
from mcbench.reports.gate import Outcome, comparison_check  # noqa: E402
from mcbench.reports.gate_budgets import Defaults  # noqa: E402


def build_model(path: Path, batch: int = 8, features: int = 256) -> Artifact:
    """y = x @ W + b, built in milliseconds like tests/conftest.py's make_linear_onnx, large enough to time."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((features, features)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(features).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, features])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return Artifact(path, "onnx", (InputSpec("x", (batch, features)),))


class Slowed:
    """A session whose every run costs `extra_s` more (a busy wait, as a slower kernel would); 0 for the control."""

    def __init__(self, session: Any, extra_s: float) -> None:
        self._session, self._extra_s = session, extra_s
        self.input_names, self.output_names = session.input_names, session.output_names

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        out = self._session.run(feeds)
        end = time.perf_counter() + self._extra_s
        while time.perf_counter() < end:
            pass
        return out


def exit_code_of_pair(a: Any, b: Any, feeds: dict[str, Any], rounds: int, plan: TimingPlan, d: Defaults) -> int:
    base_us, cand_us = interleaved_samples(a, b, feeds, rounds, plan)
    return Outcome([comparison_check("calibration", base_us, cand_us, d, "interleaved")]).exit_code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds per pair")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per side per round (400 samples a side)")
    args = parser.parse_args()
    plan = dataclasses.replace(ROUND_PLAN, min_runs=args.runs, min_seconds=1e-6)  # what --remeasure times
    d = Defaults()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = build_model(Path(tmp) / "linear.onnx")
        target = Target("onnxruntime", threads=1)
        feeds = generated_inputs(artifact.inputs, 1)[0]
        session_a, session_b = open_session(artifact, target), open_session(artifact, target)
        median_s = statistics.median(s / 1e6 for s in measure_latency(session_a, feeds, plan)[0].samples_us)
        print(f"model median {median_s * 1e6:.0f} us; {args.pairs} pairs x {args.rounds} rounds x {args.runs} "
              f"runs = {args.rounds * args.runs} samples a side;\n"
              f"min_effect {d.min_effect:.0%}, confidence {d.confidence:.0%}, max_cv {d.max_cv}")
        started = time.perf_counter()
        control = Slowed(session_a, 0.0)
        results: dict[str, list[int]] = {}
        for label, slowdown in (("A/A", 0.0), ("+10%", 0.10), ("+20%", 0.20)):
            cand = Slowed(session_b, slowdown * median_s)
            results[label] = [exit_code_of_pair(control, cand, feeds, args.rounds, plan, d) for _ in range(args.pairs)]
            codes = results[label]
            print(f"{label:>5}: exit 0 {codes.count(0):>2}, exit 1 {codes.count(1):>2}, "
                  f"exit 3 {codes.count(3):>2}, exit 2 {codes.count(2):>2}", flush=True)
    n = args.pairs
    aa = results["A/A"]
    print(f"\nfalse alarms (A/A): {aa.count(1)}/{n} regressions, {aa.count(3)}/{n} inconclusive")
    print(f"detection +10%: {results['+10%'].count(1)}/{n}; detection +20%: {results['+20%'].count(1)}/{n}")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    ok = aa.count(1) + aa.count(3) <= 1 and results["+20%"].count(1) >= 19 * n / 20
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
