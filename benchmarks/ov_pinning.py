"""OpenVINO on the CPU: mcbench's latency-hint settings (threads unpinned) against the same pinned and against
plain `compile_model` defaults, at one precision, interleaved round by round in one process.

Prints, per configuration, the median over rounds of its p50 divided by plain defaults' p50 in the same round,
with the lowest and highest round. Rounds alternate the order of the configurations.

    python benchmarks/ov_pinning.py MODEL.onnx --input 1,3,320,320 [--precision bf16] [--rounds 7] [--seconds 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def configs(precision: str) -> dict[str, dict]:
    latency = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    return {"plain defaults": {}, "mcbench (unpinned)": {**latency, "ENABLE_CPU_PINNING": False},
            "pinned": {**latency, "ENABLE_CPU_PINNING": True}}


def series_p50_ms(request, feeds: dict, seconds: float) -> float:
    for _ in range(10):
        request.infer(feeds)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        request.infer(feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--input", required=True, help="the first input's shape, e.g. 1,3,320,320")
    parser.add_argument("--precision", default="bf16", choices=("f32", "bf16", "f16"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    import openvino as ov

    core = ov.Core()
    requests = {name: core.compile_model(args.model, "CPU", c).create_infer_request()
                for name, c in configs(args.precision).items()}
    feeds = {0: np.random.default_rng(0).random(tuple(int(d) for d in args.input.split(",")), dtype=np.float32)}
    ratios: dict[str, list[float]] = {name: [] for name in requests}
    for r in range(args.rounds):
        order = list(requests) if r % 2 == 0 else list(reversed(requests))
        p50 = {name: series_p50_ms(requests[name], feeds, args.seconds) for name in order}
        for name in requests:
            ratios[name].append(p50[name] / p50["plain defaults"])
    for name, values in ratios.items():
        print(f"{name:20s} {statistics.median(values):.3f}x ({min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    main()
