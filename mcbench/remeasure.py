"""Re-measure baseline and candidate on this machine, interleaved A B A B, for `mcbench gate --remeasure N`.

Two runs recorded hours apart on a shared CI runner differ by more than most regressions; alternating short series
of both on the same machine in the same minute cancels that drift, so the comparison sees only the change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcbench.bench.latency import TimingPlan, measure_latency
from mcbench.optimizer.artifact import Artifact, generated_inputs
from mcbench.optimizer.targets import Session, Target, open_session
from mcbench.reports.gate import GateDataError
from mcbench.reports.schema import RunResult

# A short series of 50 runs: many short rounds cancel drift better than a few long ones, and the pooled rounds,
# not one series, give the precision (8 rounds: 1 false alarm in 60 A/A pairs, see benchmarks/gate_calibration.py).
ROUND_PLAN = TimingPlan(warmup_runs=5, min_runs=50, min_seconds=1e-3, max_seconds=5.0, settle_tolerance=1e9)


def interleaved_samples(
    session_a: Session, session_b: Session, feeds: dict[str, Any], rounds: int, plan: TimingPlan = ROUND_PLAN
) -> tuple[list[int], list[int]]:
    """`rounds` short series of A then B, pooled per side (microseconds)."""
    a: list[int] = []
    b: list[int] = []
    for _ in range(rounds):
        a += measure_latency(session_a, feeds, plan)[0].samples_us
        b += measure_latency(session_b, feeds, plan)[0].samples_us
    return a, b


def _session(run: RunResult, name: str) -> tuple[Session, Artifact]:
    v = run.variant(name)
    where = f"{run.run_id}/{name}"
    try:
        artifact = Artifact.from_dict(v.artifact)
        target = Target.from_dict(v.settings["in_process"])
    except (KeyError, TypeError, ValueError) as exc:
        raise GateDataError(f"{where}: the results do not say how to rebuild the session ({exc})") from None
    if not Path(artifact.path).exists():
        raise GateDataError(f"{where}: artifact {artifact.path} is gone; re-run `mcbench run` for it or drop "
                             "--remeasure to compare the stored samples")
    return open_session(artifact, target), artifact


def remeasure(baseline: RunResult, run: RunResult, rounds: int) -> dict[str, tuple[list[int], list[int]]]:
    """Fresh interleaved samples for every variant measured in both runs: name -> (baseline, candidate)."""
    names = [v.name for v in run.variants if v.status == "ok"
             and any(b.name == v.name and b.status == "ok" for b in baseline.variants)]
    if not names:
        raise GateDataError("no variant was measured in both runs; nothing to re-measure")
    out = {}
    for name in names:
        session_a, artifact = _session(baseline, name)
        session_b, _ = _session(run, name)
        feeds = generated_inputs(artifact.inputs, 1)[0]
        out[name] = interleaved_samples(session_a, session_b, feeds, rounds)
    return out
