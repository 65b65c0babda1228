"""Calibrate `mcbench gate --remeasure` on this machine with the demo's real variants: how often does it cry wolf,
how often does it catch a real slowdown?

    python -m benchmarks.gate_calibration [--run DIR] [--variants a,b] [--pairs 20] [--rounds 20]
        [--per-session-pools]

Without --run it builds the variants first with `mcbench run --quick --no-load` into a temporary folder (every
runtime the demo has here: torch eager, ORT FP32, ORT dynamic and static INT8, OpenVINO); --run DIR reuses a run.
For every variant, two sessions of the same artifact are re-timed as `--remeasure` does, by its own code
(mcbench.remeasure.measure_pairs: onnxruntime sessions on one shared thread pool in a child process; interleaved sample
by sample A B B A, several calls a sample when one is under 100 us) and compared round by round as the gate does; the
same samples pooled (the gate before issue 19) are scored beside it, so the table shows what the round as unit buys:
(a) A/A: `pairs` times; every exit 1 (regression) or 3 (inconclusive) is a false alarm.
(b) A/B: B busy-waits an extra 20% of the variant's median after each call; the detection rate is the share of
    pairs that exit 1.
Target per runtime: at most 1 false alarm in 20 A/A pairs and a 20% slowdown caught in at least 19 of 20.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from mcbench.remeasure import (
    Pair,
    calls_per_sample,
    measure_pairs,
    series_us,
    settled_rounds,
    variant_spec,
)
from mcbench.reports.gate import Outcome, comparison_check, rounds_check
from mcbench.reports.gate_budgets import Defaults
from mcbench.reports.schema import RunResult, load_results


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


class PairCodes(NamedTuple):
    """One comparison's answers: the gate's exit code, the pooled one (-1: not scored), the rounds the gate took,
    and the exit code of the first `rounds` alone."""

    gate: int
    pooled: int
    rounds: int
    first: int


def exit_codes_of_pair(a: Any, b: Any, feeds: dict[str, Any], rounds: int, samples: int, d: Defaults,
                       pooled: bool, expect_regression: bool = False) -> PairCodes:
    """The gate's exit code for one interleaved comparison: by rounds (the gate, with the rounds it adds where the
    first `rounds` leave a slowdown open), pooled (the gate before; -1 unless asked for: its pure-Python bootstrap
    over thousands of samples takes seconds a comparison), how many rounds the gate took, and the exit code the
    first `rounds` alone gave (the gate without added rounds, on the same samples)."""
    base, cand = settled_rounds(a, b, feeds, rounds, d, samples)
    first = Outcome([rounds_check("calibration", base[:rounds], cand[:rounds], d)]).exit_code
    check = rounds_check("calibration", base, cand, d)
    by_rounds = Outcome([check]).exit_code
    if by_rounds != (1 if expect_regression else 0):  # a false alarm or a missed slowdown: why, on stderr
        print(f"  {'+20% missed' if expect_regression else 'A/A alarm'} (exit {by_rounds}): {check.message}",
              file=sys.stderr)
    if not pooled:
        return PairCodes(by_rounds, -1, len(base), first)
    check = comparison_check("calibration", [x for r in base for x in r], [x for r in cand for x in r], d, "pooled")
    return PairCodes(by_rounds, Outcome([check]).exit_code, len(base), first)


def rounds_taken(codes: list[PairCodes], asked: int, alarm: bool) -> str:
    """'all 20', or how many pairs took more rounds, the most any took, and what the first `asked` rounds alone
    answered (`alarm`: count false alarms, else catches): '2 took more, up to 60; 20 alone: 1 alarm'."""
    more = [c.rounds for c in codes if c.rounds > asked]
    if not more:
        return f"all {asked}"
    alone = sum(c.first in (1, 3) for c in codes) if alarm else sum(c.first == 1 for c in codes)
    return f"{len(more)} took more, up to {max(more)}; {asked} alone: {alone} {'alarms' if alarm else 'caught'}"


def demo_run(out: Path) -> RunResult:
    """The demo's variants, built by the existing pipeline (quick, no HTTP load)."""
    cmd = [sys.executable, "-m", "mcbench.cli", "run", "--quick", "--no-load", "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return load_results(out / "results.json")


def calibrate_pair(session_a: Any, session_b: Any, feeds: dict[str, Any], pairs: int, rounds: int, samples: int,
                   d: Defaults, pooled: bool = False) -> dict:
    """A/A and +20% exit codes for one variant, from two sessions of its artifact (set up as the gate's are)."""
    calls = calls_per_sample(session_a, feeds)
    median_s = statistics.median(series_us(session_a, feeds, samples, calls)) / 1e6
    control = Slowed(session_a, 0.0)
    codes = {}
    for label, slowdown in (("A/A", 0.0), ("+20%", 0.20)):
        cand = Slowed(session_b, slowdown * median_s)
        codes[label] = [exit_codes_of_pair(control, cand, feeds, rounds, samples, d, pooled, slowdown > 0)
                        for _ in range(pairs)]
    return {"median_us": median_s * 1e6, "calls": calls, **codes}


def calibrate_variant(run: RunResult, name: str, pairs: int, rounds: int, samples: int, d: Defaults,
                      pooled: bool = False, shared_pool: bool = True) -> dict:
    """calibrate_pair on two sessions of the variant's artifact, opened by the gate's own code (mcbench.remeasure:
    onnxruntime on one shared thread pool in a child process, unless not `shared_pool`); "pool" says how."""
    spec = variant_spec(run, name)
    [(result, note)] = measure_pairs([Pair(name, spec, spec)], calibrate_pair, pairs, rounds, samples, d,
                                     pooled, shared_pool=shared_pool).values()
    return {**result, "pool": note or "-"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a run folder to reuse (default: build the demo's quick run)")
    parser.add_argument("--variants", help="only these variants, comma-separated (default: every one measured)")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds per pair (--remeasure N)")
    parser.add_argument("--samples", type=int, default=50, help="samples per side per round (at least; and 20 ms)")
    parser.add_argument("--pooled", action="store_true", help="also score the samples pooled, as the gate did before")
    parser.add_argument("--per-session-pools", action="store_true",
                        help="give every onnxruntime session its own thread pool, as the gate did before (to compare)")
    parser.add_argument("--max-rounds-factor", type=int, default=Defaults.max_rounds_factor,
                        help="the gate adds rounds up to this many times --rounds while a slowdown is open (1: never)")
    args = parser.parse_args()
    d = Defaults(max_rounds_factor=args.max_rounds_factor)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = load_results(args.run / "results.json") if args.run else demo_run(Path(tmp) / "run")
        print(f"{args.pairs} pairs x {args.rounds} rounds x {args.samples} samples a side per round; "
              f"min_effect {d.min_effect:.0%}, confidence {d.confidence:.0%}, max_cv {d.max_cv}")
        print(f"{'':<38}{'by rounds (the gate)':>26}" + (f"{'pooled (before)':>26}" if args.pooled else ""))
        print(f"{'variant':<24}{'median us':>10}{'calls':>6}" + f"{'A/A alarms':>13}{'+20% caught':>13}"
              * (2 if args.pooled else 1) + "  rounds taken (A/A | +20%)  threads")
        ok = True
        only = set(args.variants.split(",")) if args.variants else None
        for v in (v for v in run.variants if v.status == "ok" and (only is None or v.name in only)):
            r = calibrate_variant(run, v.name, args.pairs, args.rounds, args.samples, d, args.pooled,
                                  not args.per_session_pools)
            cells = ""
            for i in (0, 1) if args.pooled else (0,):
                alarms = sum(c[i] in (1, 3) for c in r["A/A"])
                caught = sum(c[i] == 1 for c in r["+20%"])
                cells += f"{alarms:>10}/{args.pairs}{caught:>10}/{args.pairs}"
                if i == 0:
                    ok = ok and alarms <= args.pairs / 20 and caught >= 19 * args.pairs / 20
            taken = " | ".join(rounds_taken(r[label], args.rounds, label == "A/A") for label in ("A/A", "+20%"))
            print(f"{v.name:<24}{r['median_us']:>10.1f}{r['calls']:>6}{cells}  {taken:<24}  {r['pool']}", flush=True)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
