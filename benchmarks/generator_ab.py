"""The load generator A/B: one setting of the generator's environment against another, side by side.

One mcbench model server (the torch spinner, the server's `--spin-ms` busy-wait as its service time, on the first
core) is load-tested from the last core in rounds; each round runs `run_load` once with each value of the
setting, the order alternating round by round (ABAB...), a closed loop of one user then an open loop with constant
arrivals at `--rate`. Per round and value it prints the closed p99, the open p50/p99, their p99 ratio, how late
the open loop sent (p50/p99) and the generator's CPU; then the medians over the rounds.

Not benchmarks.harness: each side is a whole load test (run_load, a Locust process), not a call to time.

    python -m benchmarks.generator_ab --env MCBENCH_YIELD_US=0,400 --rate 470 --spin-ms 0.5 --rounds 6

Any environment variable the locustfile reads can be compared this way (MCBENCH_WAKE=thread,loop, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

COLUMNS = ("closed_p99_ms", "open_p50_ms", "open_p99_ms", "open_over_closed_p99", "lag_p50_ms", "lag_p99_ms",
           "generator_cpu_percent")


def one_round(url: str, name: str, value: str, rate: float, seconds: float, cores: list[int], folder: Path
              ) -> dict[str, float]:
    """A closed step of one user and an open step at `rate`, the generator run with `name`=`value`."""
    from mcbench.bench.load import Endpoint, Requests, StepRules, run_load

    requests = Requests.encode([{"x": np.zeros((1, 4), np.float32)}])
    rules = StepRules(seconds=seconds, warmup_s=1, max_seconds=seconds, budget_p99_ms=1000, check_every=0,
                      arrivals="constant", grace_s=2.0)
    os.environ[name] = value  # the generator's processes inherit it
    try:
        result = run_load(Endpoint(url, "spinner"), requests, [1], [rate], rules, cores[-1:], cores[:1], 1, folder)
    finally:
        os.environ.pop(name)
    closed, open_ = result.steps[0], result.open_steps[0]
    return {"closed_p99_ms": closed.latency.p99_ms, "open_p50_ms": open_.latency.p50_ms,
            "open_p99_ms": open_.latency.p99_ms, "open_over_closed_p99": open_.latency.p99_ms / closed.latency.p99_ms,
            "lag_p50_ms": open_.send_lag_p50_ms, "lag_p99_ms": open_.send_lag_p99_ms,
            "generator_cpu_percent": open_.loadgen_cpu_percent or float("nan")}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.truth import spinner_spec
    from mcbench.bench.launcher import serve_in_subprocess

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", required=True, help="NAME=A,B: the setting and the values to compare")
    parser.add_argument("--rate", type=float, default=470.0, help="the open loop's requests a second")
    parser.add_argument("--spin-ms", type=float, default=0.5, help="the server's service time")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each step")
    parser.add_argument("--json", type=Path, help="also write every round here")
    args = parser.parse_args(argv)
    name, _, values = args.env.partition("=")
    values = values.split(",")
    if not name or len(values) < 2:
        parser.error("--env takes NAME=A,B (two values or more)")
    cores = sorted(os.sched_getaffinity(0))
    rows: dict[str, list[dict[str, float]]] = {v: [] for v in values}
    with tempfile.TemporaryDirectory(prefix="mcbench-ab-") as tmp:
        folder = Path(tmp)
        with serve_in_subprocess(spinner_spec(folder), cores[:1], extra=["--spin-ms", f"{args.spin_ms:g}"]) as server:
            for i in range(args.rounds):
                for value in values if i % 2 == 0 else values[::-1]:
                    row = one_round(server.url, name, value, args.rate, args.seconds, cores, folder / f"{i}-{value}")
                    rows[value].append(row)
                    print(f"round {i} {name}={value}: " + ", ".join(f"{k} {row[k]:.3f}" for k in COLUMNS), flush=True)
    print(f"\n| {name} | " + " | ".join(COLUMNS) + " |")
    print("| --- |" + " --- |" * len(COLUMNS))
    for value, runs in rows.items():
        print(f"| {value} | " + " | ".join(f"{np.median([r[k] for r in runs]):.3f}" for k in COLUMNS) + " |")
    if args.json:
        args.json.write_text(json.dumps({"setting": name, "rate": args.rate, "spin_ms": args.spin_ms, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
