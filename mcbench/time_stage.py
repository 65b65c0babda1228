"""The time stage (a searching run only): the full in-process timing, in a child process, for the baseline and every
candidate that can still reach the frontier, most promising first, while the run has used under TIME_SHARE of its
time budget. A candidate whose screening says another is surely faster at no lower quality is first timed side by
side with it (mcbench.search.stopped_side_by_side) and stops only where every round agrees.
"""

from __future__ import annotations

from mcbench.base.text import first_line
from mcbench.bench.isolate import ChildError, call_in_child, error_text
from mcbench.bench.measure import time_in_process
from mcbench.optimizer.targets import Target
from mcbench.reports.quality import quality_metric
from mcbench.reports.schema import VariantResult
from mcbench.run_state import RunState, going
from mcbench.screen_stage import MEASURE_TIMEOUT_S, screening_plan
from mcbench.search import TIME_SHARE, points, record, stopped_side_by_side, suspects


def time_candidates(state: RunState) -> None:
    """Each candidate still going timed in full, or its record saying why not (stopped side by side, budget)."""
    config, run, budget = state.config, state.run, state.budget
    if not config.searches:
        return
    metric = quality_metric(run)
    pts = points(run, metric)
    again = screening_plan(config.timing) != config.timing
    todo = sorted(going(state), key=lambda v: (v.name != run.baseline, v.latency.p50_ms))
    stopped = stopped_side_by_side(run, suspects(run, todo, pts, metric), state.say)
    for index, v in enumerate(todo, start=1):
        if v.name in stopped:
            continue
        if not again:
            record(v, "time")  # quick: the screening timing is the full one
            continue
        if not budget.allows(TIME_SHARE):
            record(v, "screen", f"not timed in full: {budget.text()} was {TIME_SHARE:.0%} spent; its figures "
                                f"are the screening's ({v.latency.count} samples)")
            continue
        state.on_stage("time", index, len(todo), v.name, budget)
        time_in_full(state, v)


def time_in_full(state: RunState, v: VariantResult) -> None:
    """The full timing of one candidate: its latency replaces the screening's; a child that fails stops it."""
    candidate, timing = state.candidates[v.name], state.config.timing
    target = Target.from_dict(v.settings["in_process"])
    try:
        latency, settled = call_in_child(time_in_process, candidate.artifact.to_dict(), target.to_dict(),
                                         state.workload.timing_feeds, timing, candidate.spec.batch_size,
                                         timeout_s=MEASURE_TIMEOUT_S)
    except ChildError as exc:
        record(v, "screen", f"full timing failed: {first_line(error_text(exc))}")
        return
    v.latency = latency
    if not settled:
        v.warnings.append(f"in-process median did not settle within {timing.max_seconds:.0f} s "
                          f"(CV {latency.cv:.0%}): the machine is noisy")
    record(v, "time")
    state.say(f"  {v.name}: p50 {latency.p50_ms:.3f} ms, p99 {latency.p99_ms:.3f} ms (n={latency.count})")
