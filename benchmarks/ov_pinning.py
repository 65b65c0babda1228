"""OpenVINO on the CPU: mcbench's latency-hint settings (threads unpinned) against the same pinned and against
plain `compile_model` defaults, at one precision, interleaved in one process (benchmarks.harness: the gate's
rounds, sample by sample).

Prints, per configuration, the median over rounds of its median divided by plain defaults' in the same round, with
its 95% interval, and its median milliseconds.

    python -m benchmarks.ov_pinning MODEL.onnx --input 1,3,320,320 [--precision bf16] [--rounds 7] [--seconds 1]
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np

from benchmarks.harness import side_by_side


def configs(precision: str) -> dict[str, dict]:
    latency = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    return {"plain defaults": {}, "mcbench (unpinned)": {**latency, "ENABLE_CPU_PINNING": False},
            "pinned": {**latency, "ENABLE_CPU_PINNING": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--input", required=True, help="the first input's shape, e.g. 1,3,320,320")
    parser.add_argument("--precision", default="bf16", choices=("f32", "bf16", "f16"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="a configuration's time in one round, at least")
    args = parser.parse_args()
    import openvino as ov

    core = ov.Core()
    requests = {name: core.compile_model(args.model, "CPU", c).create_infer_request()
                for name, c in configs(args.precision).items()}
    feeds = {0: np.random.default_rng(0).random(tuple(int(d) for d in args.input.split(",")), dtype=np.float32)}
    timed = side_by_side({name: partial(r.infer, feeds) for name, r in requests.items()}, args.rounds,
                         seconds=args.seconds)
    for name in requests:
        print(f"{name:20s} {timed.ratio(name, 'plain defaults').text()}, median {timed.median_ms(name):.3f} ms")


if __name__ == "__main__":
    main()
