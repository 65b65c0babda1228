"""The search against the exhaustive run of the same space: wall time, and how good the recommendation is.

    python -m benchmarks.search [--model demo|PATH] [--quick] [--no-load] [--rounds 20] [-- RUN FLAGS]

Runs `mcbench run` twice on the same model and space, once searching (the default) and once with --exhaustive
(every candidate through every stage), each in its own folder and process, with a shared artifact cache so the
second run does not win by reusing the first's builds unfairly: both start from a cleared cache. Then it opens
the two recommended variants' sessions and times them interleaved, round by round (as `mcbench gate
--remeasure` does), so their p50s are compared in the same minute on the same machine. Prints one table:
wall time, candidates load-tested, the recommended variant and its quality from each run, and the interleaved
p50s with the ratio search / exhaustive. Target: the search's pick within 5% of the exhaustive pick's p50 at
equal quality.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcbench.optimizer.artifact import generated_inputs
from mcbench.remeasure import interleaved_rounds, variant_session
from mcbench.reports.decide import recommend
from mcbench.reports.gate_stats import compare_rounds
from mcbench.reports.quality import quality_metric, quality_of
from mcbench.reports.schema import RunResult, load_results


def timed_run(out: Path, cache: Path, flags: list[str]) -> tuple[float, RunResult]:
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [sys.executable, "-m", "mcbench.cli", "run", "--out", str(out), "--cache-dir", str(cache), *flags]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, load_results(out / "results.json")


def pick(run: RunResult) -> str:
    rec = recommend(run)
    return rec.variant or run.baseline or ""


def load_tested(run: RunResult) -> int:
    return sum(v.load is not None for v in run.variants)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo", help="'demo' (the built-in digits CNN) or a --model for mcbench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-load", action="store_true")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds for the final comparison")
    parser.add_argument("run_flags", nargs="*", help="more `mcbench run` flags (after --)")
    args = parser.parse_args()
    flags = ([] if args.model == "demo" else ["--model", args.model]) + (["--quick"] if args.quick else []) + \
        (["--no-load"] if args.no_load else []) + args.run_flags
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        search_s, searched = timed_run(root / "search", root / "cache", flags)
        full_s, exhaustive = timed_run(root / "exhaustive", root / "cache", flags + ["--exhaustive"])
        a, b = pick(searched), pick(exhaustive)
        metric = quality_metric(exhaustive)
        session_a, artifact = variant_session(searched, a)
        session_b, _ = variant_session(exhaustive, b)
        feeds = generated_inputs(artifact.inputs, 1)[0]
        rounds_a, rounds_b = interleaved_rounds(session_a, session_b, feeds, args.rounds)
        cmp = compare_rounds(rounds_b, rounds_a, min_effect=0.05, confidence=0.95, max_cv=0.5)
        p50 = [statistics.median(x for r in rounds for x in r) for rounds in (rounds_a, rounds_b)]
        print(f"model {args.model}, flags {' '.join(flags) or '(none)'}; {args.rounds} interleaved rounds at the end")
        print(f"{'run':<12}{'wall s':>8}{'candidates':>12}{'load-tested':>13}  {'recommended':<26}"
              f"{metric.short:>10}{'p50 us (interleaved)':>22}")
        for label, wall, run, name, median in (("search", search_s, searched, a, p50[0]),
                                               ("exhaustive", full_s, exhaustive, b, p50[1])):
            quality = metric.format(quality_of(run.variant(name), metric), 3)
            print(f"{label:<12}{wall:>8.0f}{len(run.variants):>12}{load_tested(run):>13}  {name:<26}{quality:>10}"
                  f"{median:>22.1f}")
        print(f"search pick / exhaustive pick, p50: {cmp.describe()}")
        print(f"wall time: search {search_s / full_s:.0%} of exhaustive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
