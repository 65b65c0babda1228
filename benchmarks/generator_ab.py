"""The load generator A/B: one value of a generator setting against another, side by side.

One mcbench model server (the torch spinner, the server's `--spin-ms` busy-wait as its service time, on the first
core) is load-tested from the last core in rounds; each round runs `run_load` once with each value of the
setting, the order alternating round by round (ABAB...), a closed loop of one user then an open loop with constant
arrivals at `--rate`. Per round and value it prints the closed p99, the open p50/p99, their p99 ratio, how late
the open loop sent (p50/p99) and the generator's CPU; then the medians over the rounds.

Not benchmarks.harness: each side is a whole load test (run_load, a Locust process), not a call to time.

    python -m benchmarks.generator_ab --setting yield_us=0,400 --rate 470 --spin-ms 0.5 --rounds 6

Any field of the Locust processes' settings file (bench.load_settings.LoadSettings) that the run does not fill in
itself can be compared this way: TUNABLE (wake=thread,loop, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

TUNABLE = ("wake", "yield_us", "max_in_flight", "request_timeout_s")  # LoadSettings fields each step leaves as given
COLUMNS = ("closed_p99_ms", "open_p50_ms", "open_p99_ms", "open_over_closed_p99", "lag_p50_ms", "lag_p99_ms",
           "generator_cpu_percent")


def setting_value(name: str, text: str) -> object:
    """`text` as the LoadSettings field `name` takes it (a number for yield_us); a ValueError if it cannot be."""
    from mcbench.bench.load_settings import LoadSettings, LoadSettingsError

    if name not in TUNABLE:
        raise ValueError(f"the setting must be one of {', '.join(TUNABLE)}, got {name!r}")
    kind = type(getattr(LoadSettings(), name))
    try:
        value = kind(text)
        LoadSettings(**{name: value})
    except (ValueError, LoadSettingsError) as exc:
        raise ValueError(f"{name}={text}: {exc}") from None
    return value


def one_round(url: str, name: str, value: str, rate: float, seconds: float, cores: list[int], folder: Path
              ) -> dict[str, float]:
    """A closed step of one user and an open step at `rate`, the generator run with `name`=`value`."""
    from mcbench.bench.load import Endpoint, Requests, run_load
    from mcbench.bench.load_plan import LoadPlan
    from mcbench.bench.load_settings import LoadSettings

    requests = Requests.encode([{"x": np.zeros((1, 4), np.float32)}])
    rules = LoadPlan(step_seconds=seconds, warmup_s=1, max_step_seconds=seconds, budget_p99_ms=1000, check_every=0,
                     arrivals="constant")
    settings = LoadSettings(**{name: setting_value(name, value)})  # written to the Locust processes' settings file
    result = run_load(Endpoint(url, "spinner"), requests, [1], [rate], rules, cores[-1:], cores[:1], 1, folder,
                      settings=settings)
    closed, open_ = result.steps[0], result.open_steps[0]
    return {"closed_p99_ms": closed.latency.p99_ms, "open_p50_ms": open_.latency.p50_ms,
            "open_p99_ms": open_.latency.p99_ms, "open_over_closed_p99": open_.latency.p99_ms / closed.latency.p99_ms,
            "lag_p50_ms": open_.send_lag_p50_ms, "lag_p99_ms": open_.send_lag_p99_ms,
            "generator_cpu_percent": open_.loadgen_cpu_percent or float("nan")}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.truth import spinner_spec
    from mcbench.bench.launcher import serve_in_subprocess

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", required=True, help=f"NAME=A,B: the setting ({', '.join(TUNABLE)}) and the "
                                                        "values to compare")
    parser.add_argument("--rate", type=float, default=470.0, help="the open loop's requests a second")
    parser.add_argument("--spin-ms", type=float, default=0.5, help="the server's service time")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each step")
    parser.add_argument("--json", type=Path, help="also write every round here")
    args = parser.parse_args(argv)
    name, _, values = args.setting.partition("=")
    values = values.split(",")
    if not name or len(values) < 2:
        parser.error("--setting takes NAME=A,B (two values or more)")
    try:
        for value in values:
            setting_value(name, value)
    except ValueError as exc:
        parser.error(f"--setting: {exc}")
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
