"""Known service time: does mcbench measure what is there?

A model that busy-waits a set number of microseconds (`mcbench.bench.calibration.spinner`) is measured
the ways mcbench measures every variant: in-process (`bench.latency.measure_latency`, the timer every run
uses), and over HTTP from mcbench's own model server under Locust (`bench.load.run_load`) in a closed loop
of one user and in an open loop at half of that loop's throughput. The table holds, per set time:

- in-process p50 and p99 against the set time (the instrument's own error);
- the HTTP p50 against set time + the HTTP overhead, measured as the HTTP p50 of a 0 us spinner;
- the open loop's p99 against the closed loop's at the same or higher throughput: an open loop below
  capacity that showed coordinated omission would hide queueing and read low, or, with it charged, not
  exceed the closed loop's tail by much (no more than 2x).

    python benchmarks/truth.py [--service-us 500,2000,10000] [--seconds 6] [--in-process-seconds 3]

Run it on a quiet machine: a busy-wait shares the core with whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mcbench.bench.calibration import spinner_artifact  # noqa: E402
from mcbench.bench.latency import TimingPlan, measure_latency  # noqa: E402
from mcbench.optimizer.targets import Target, open_session  # noqa: E402


def in_process(service_us: float, seconds: float, folder: Path) -> dict[str, float]:
    session = open_session(spinner_artifact(service_us, folder), Target("torch", threads=1))
    feeds = {"x": np.zeros((1, 4), np.float32)}
    plan = TimingPlan(warmup_runs=20, min_runs=200, min_seconds=seconds, max_seconds=seconds, settle_tolerance=1e9)
    stats = measure_latency(session, feeds, plan)[0]
    return {"p50_ms": stats.p50_ms, "p99_ms": stats.p99_ms, "n": stats.count}


def over_http(service_us: float, seconds: float, folder: Path, cores: list[int]) -> dict[str, float]:
    """Closed loop of one user, then an open loop at half its throughput, from mcbench's server."""
    from mcbench.bench.load import Endpoint, Requests, StepRules, run_load
    from mcbench.bench.server import serve_in_subprocess

    artifact = spinner_artifact(service_us, folder)
    spec = folder / f"server-{int(service_us)}.json"
    spec.write_text(json.dumps({"name": "spinner", "artifact": artifact.to_dict(),
                                "target": Target("torch", threads=1).to_dict()}))
    rules = StepRules(seconds=seconds, warmup_s=1.0, max_seconds=seconds, check_every=0, grace_s=2.0)
    feeds = [{"x": np.zeros((1, 4), np.float32)}]
    server_cores, gen_cores = cores[:1], cores[-1:]
    with serve_in_subprocess(spec, server_cores) as server:
        endpoint = Endpoint(server.url, "spinner")
        closed = run_load(endpoint, Requests.encode(feeds), [1], [], rules, gen_cores, server_cores, 1,
                          folder / f"closed-{int(service_us)}")
        step = closed.steps[0]
        rate = max(1.0, round(step.throughput_rps / 2, 1))
        opened = run_load(endpoint, Requests.encode(feeds), [], [rate], rules, gen_cores, server_cores, 1,
                          folder / f"open-{int(service_us)}").open_steps[0]
    return {"closed_p50_ms": step.latency.p50_ms, "closed_p99_ms": step.latency.p99_ms,
            "closed_rps": step.throughput_rps, "open_rate": rate, "open_rps": opened.throughput_rps,
            "open_p50_ms": opened.latency.p50_ms, "open_p99_ms": opened.latency.p99_ms,
            "n_closed": step.latency.count, "n_open": opened.latency.count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--service-us", default="500,2000,10000")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each HTTP step")
    parser.add_argument("--in-process-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcbench-truth-") as tmp:
        folder = Path(tmp)
        overhead = over_http(0.0, args.seconds, folder, cores)["closed_p50_ms"]
        for us in (float(x) for x in args.service_us.split(",")):
            inproc, http = in_process(us, args.in_process_seconds, folder), over_http(us, args.seconds, folder, cores)
            set_ms = us / 1000
            rows.append({
                "set_ms": set_ms,
                "in_process_p50_ms": round(inproc["p50_ms"], 4), "p50_error": round(inproc["p50_ms"] / set_ms - 1, 4),
                "in_process_p99_ms": round(inproc["p99_ms"], 4), "p99_error": round(inproc["p99_ms"] / set_ms - 1, 4),
                "n": inproc["n"],
                "http_p50_ms": round(http["closed_p50_ms"], 4),
                "expected_http_p50_ms": round(set_ms + overhead, 4),
                "http_p50_error": round(http["closed_p50_ms"] / (set_ms + overhead) - 1, 4),
                "closed_p99_ms": round(http["closed_p99_ms"], 4), "closed_rps": round(http["closed_rps"], 1),
                "open_rate": http["open_rate"], "open_rps": round(http["open_rps"], 1),
                "open_p99_ms": round(http["open_p99_ms"], 4),
                "open_over_closed_p99": round(http["open_p99_ms"] / http["closed_p99_ms"], 3),
            })
    print(json.dumps({"http_overhead_p50_ms": round(overhead, 4), "cores": cores, "rows": rows}, indent=1))
    print("\n| set ms | in-process p50 (err) | p99 (err) | n | HTTP p50 | set + overhead | err "
          "| open p99 / closed p99 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['set_ms']:g} | {r['in_process_p50_ms']:.4f} ({r['p50_error']:+.2%}) | "
              f"{r['in_process_p99_ms']:.4f} ({r['p99_error']:+.2%}) | {r['n']} | {r['http_p50_ms']:.3f} | "
              f"{r['expected_http_p50_ms']:.3f} | "
              f"{r['http_p50_error']:+.1%} | {r['open_over_closed_p99']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
