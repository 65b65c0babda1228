"""The confirmation round: before recommending, time the finalists and the baseline side by side.

The search ranks candidates on timings taken minutes apart (a 3-second screening, a full timing later, the baseline
first of all); on a shared machine the baseline drifted 48% between two of its own timings, and a headline read
147x because the baseline was timed during a burst of other work. So the finalists (the decision's frontier within
the quality budget, at most MAX_FINALISTS) are each timed against the baseline with the gate's own machinery
(`mcbench.remeasure`: interleaved sample by sample, A B B A, on one shared onnxruntime pool where both sides can
share it, in child processes), and the recommendation, its speedup and its interval come from that round only:
the median of the per-round ratios with its order-statistic interval (reports.gate_stats.median_round_ratio), which
one round slowed by a burst of other work does not move.

A finalist that is not surely faster than a simpler one (its interval overlaps the other's; the baseline counts,
at a ratio of exactly 1) loses the tie to it: lossless beats lossy, then fewer passes, then fewer runtime settings
moved off their default (one thread on a two-core machine, the throughput hint), then the smaller file.
Only for the in-process objectives (p50, p99); throughput and cost are decided on the load test's figures.

The search stops a candidate for being slower only on the same kind of evidence (`side_by_side`): screenings taken
minutes apart say which pair to look at, a short interleaved round of the two says whether to stop it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from mcbench.base.text import first_line
from mcbench.bench.isolate import ChildError, call_in_child, error_text
from mcbench.optimizer.hardware import usable_cores
from mcbench.optimizer.recipes import VariantSpec, keeps_fp32
from mcbench.optimizer.targets import Target, openvino_config
from mcbench.remeasure import Pair, interleaved_rounds, measure_pairs, shares_pool, variant_spec
from mcbench.reports.decision import THIS_MACHINE, decide, profile_names
from mcbench.reports.gate import GateDataError
from mcbench.reports.gate_budgets import Defaults
from mcbench.reports.gate_stats import median_round_ratio
from mcbench.reports.schema import Confirmation, ConfirmedRatio, RunResult, TieDecision, VariantResult

IN_PROCESS_OBJECTIVES = ("p50", "p99")
MAX_FINALISTS = 4
ROUNDS, QUICK_ROUNDS = 20, 10  # the round as the unit (compare_rounds): an interval narrows as 1/sqrt(rounds)
SIDE_BY_SIDE_ROUNDS = 6  # at 95% the median's interval is then the whole range: every round must agree
SAMPLES_PER_ROUND = 10  # per side, and at least remeasure.MIN_SERIES_NS of them; the gate's 50 would take a 50 ms
# model 100 s per finalist
CHILD_TIMEOUT_S = 3600.0


def finalists(run: RunResult) -> list[VariantResult]:
    """The decision's frontier within the budget, best figure first, at most MAX_FINALISTS, baseline left out; none
    where no round is held: a load-based objective, a run with hardware profiles (its variants may be for other
    machines), no baseline, no compiled variant within the budget."""
    objective = run.objective or run.config.get("objective")
    if objective not in IN_PROCESS_OBJECTIVES or profile_names(run) != [THIS_MACHINE] or run.baseline is None:
        return []
    d = decide(run, THIS_MACHINE)
    if d.kind != "ship":
        return []
    return [v for v in d.frontier if v.name != run.baseline and v.settings.get("in_process")][:MAX_FINALISTS]


# ---------------------------------------------------------------- the tie rule (pure: unit-tested on numbers)


@dataclass(frozen=True)
class Entry:
    """A contender of the round: the baseline (ratio 1, no interval) or a finalist with its confirmed ratio."""

    name: str
    ratio: float
    low: float
    high: float
    lossy: bool
    passes: int
    size_bytes: int
    knobs: int = 0  # runtime settings moved off their default (`knobs`)

    @property
    def simplicity(self) -> tuple[bool, int, int, int]:
        """Lower is simpler: lossless before lossy, then fewer passes, fewer settings moved, the smaller file."""
        return self.lossy, self.passes, self.knobs, self.size_bytes


def surely_faster(a: Entry, b: Entry) -> bool:
    """a's interval lies wholly below b's (the baseline's is the point 1)."""
    return a.high < b.low


def simpler_because(winner: Entry, loser: Entry) -> str:
    if winner.lossy != loser.lossy:
        return "it keeps FP32 numerics"
    if winner.passes != loser.passes:
        return f"{loser.passes - winner.passes} pass{'es' if loser.passes - winner.passes != 1 else ''} fewer"
    if winner.knobs != loser.knobs:
        return "it keeps the runtime's default settings" if winner.knobs == 0 else "fewer runtime settings moved"
    return f"its file is {(loser.size_bytes - winner.size_bytes) / 1e6:.2g} MB smaller"


def interval_text(e: Entry) -> str:
    if e.low == e.high == 1.0:
        return "the baseline itself"
    return f"ratio {e.ratio:.3f}, interval {e.low:.3f}-{e.high:.3f}"


def pick_with_ties(contenders: list[Entry]) -> tuple[str, list[TieDecision]]:
    """The lowest ratio, then, while a simpler contender is not surely slower than the pick, the simplest such
    one instead; each step is a TieDecision."""
    pick = min(contenders, key=lambda e: (e.ratio, e.simplicity))
    ties: list[TieDecision] = []
    while True:
        rivals = [e for e in contenders if e.simplicity < pick.simplicity and not surely_faster(pick, e)]
        if not rivals:
            return pick.name, ties
        winner = min(rivals, key=lambda e: e.simplicity)
        ties.append(TieDecision(winner.name, pick.name,
                                f"{pick.name} ({interval_text(pick)}) is not surely faster than {winner.name} "
                                f"({interval_text(winner)}), which is simpler: {simpler_because(winner, pick)}"))
        pick = winner


def knobs(target: Target) -> int:
    """How many runtime settings the target moves off their default: fewer threads than this machine's cores, a hint
    other than latency, a stream count, OpenVINO's CPU threads left unpinned (it pins them by default). Two variants
    that time alike differ in nothing else that matters."""
    fewer_threads = target.threads is not None and target.threads < len(usable_cores())
    other_hint = target.options.get("hint", "LATENCY") != "LATENCY"
    unpinned = target.runtime == "openvino" and target.device == "cpu" and not openvino_config(target).get(
        "ENABLE_CPU_PINNING", True)
    return int(fewer_threads) + int(other_hint) + int(bool(target.options.get("streams"))) + int(unpinned)


def entry_of(v: VariantResult, ratio: ConfirmedRatio | None) -> Entry:
    target = Target.from_dict(v.settings["in_process"]) if v.settings.get("in_process") else Target(v.runtime)
    lossy = not keeps_fp32(VariantSpec(v.name, tuple(v.recipe), target))
    size = int((v.artifact or {}).get("size_bytes") or 0)
    if ratio is None:  # the baseline: nothing compiled, the simplest of all
        return Entry(v.name, 1.0, 1.0, 1.0, False, -1, size)
    return Entry(v.name, ratio.ratio, ratio.low, ratio.high, lossy, len(v.recipe), size, knobs(target))


# ---------------------------------------------------------------- the round


def timed_pairs(pairs: list[Pair], rounds: int, samples: int) -> dict:
    """name -> ((baseline rounds, finalist rounds), pool note); every pair timed in a child process."""
    shared = [p for p in pairs if shares_pool(p)]
    out = measure_pairs(shared, interleaved_rounds, rounds, samples) if shared else {}
    own = [p for p in pairs if not shares_pool(p)]
    if own:
        out |= call_in_child(measure_pairs, own, interleaved_rounds, rounds, samples, timeout_s=CHILD_TIMEOUT_S)
    return out


def confirmed_ratio(name: str, base: list[list[float]], mine: list[list[float]], note: str,
                    confidence: float) -> ConfirmedRatio:
    ratio, low, high = median_round_ratio(base, mine, confidence)
    flat_base, flat_mine = [x for r in base for x in r], [x for r in mine for x in r]
    return ConfirmedRatio(name, ratio, low, high, len(base), len(flat_mine),
                          statistics.median(flat_base) / 1e3, statistics.median(flat_mine) / 1e3, note)


def confirmation(run: RunResult, quick: bool = False) -> Confirmation | None:
    """The round for the run's decision, or None where there is none to hold (`finalists`). A failure to time is
    recorded (`note`, no pick), never raised."""
    final = finalists(run)
    if not final:
        return None
    rounds, defaults = QUICK_ROUNDS if quick else ROUNDS, Defaults()
    objective = run.objective or run.config.get("objective")
    record = Confirmation(objective, THIS_MACHINE, run.baseline, [v.name for v in final], rounds, SAMPLES_PER_ROUND,
                          defaults.confidence, [])
    try:
        base_spec = variant_spec(run, run.baseline)
        pairs = [Pair(v.name, base_spec, variant_spec(run, v.name)) for v in final]
        timed = timed_pairs(pairs, rounds, SAMPLES_PER_ROUND)
    except (ChildError, GateDataError) as exc:
        why = error_text(exc) if isinstance(exc, ChildError) else str(exc)
        record.note = f"the round could not be timed: {first_line(why)}"
        return record
    record.ratios = [confirmed_ratio(name, *timed[name][0], timed[name][1], defaults.confidence)
                     for name in record.finalists]
    by_name = {r.name: r for r in record.ratios}
    contenders = [entry_of(run.variant(run.baseline), None)] + [entry_of(v, by_name[v.name]) for v in final]
    record.pick, record.ties = pick_with_ties(contenders)
    return record


def side_by_side(run: RunResult, pairs: list[tuple[str, str]],
                 rounds: int = SIDE_BY_SIDE_ROUNDS) -> dict[str, ConfirmedRatio | str]:
    """Each (fast, slow) pair timed interleaved (mcbench.remeasure), in as few child processes as the pairs' pools
    allow: slow's name -> its ratio of medians to fast's (above 1: slower, with the interval of `rounds` rounds), or
    the one line that says why the pairs could not be timed."""
    try:
        timed = timed_pairs([Pair(slow, variant_spec(run, fast), variant_spec(run, slow)) for fast, slow in pairs],
                            rounds, SAMPLES_PER_ROUND)
    except (ChildError, GateDataError) as exc:
        why = first_line(error_text(exc) if isinstance(exc, ChildError) else str(exc))
        return {slow: why for _, slow in pairs}
    confidence = Defaults().confidence
    return {slow: confirmed_ratio(slow, *timed[slow][0], timed[slow][1], confidence) for _, slow in pairs}


def ratio_line(r: ConfirmedRatio) -> str:
    """'ort-fp32: 3.21x the baseline's speed (95% CI 3.10-3.33x), medians 0.041 vs 0.132 ms, 20 rounds'"""
    speed, slow, fast = 1 / r.ratio, 1 / r.high, 1 / r.low
    return (f"{r.name}: {speed:.2f}x the baseline's speed (95% CI {slow:.2f}-{fast:.2f}x), medians "
            f"{r.variant_ms:.4g} vs {r.baseline_ms:.4g} ms, {r.rounds} rounds")


def confirm_stage(run: RunResult, quick: bool, say) -> None:
    """The pipeline's last stage: hold the round, record it in `run.confirmation`, say it on the terminal."""
    final = [v.name for v in finalists(run)]
    if final:
        say(f"confirming {', '.join(final)} against {run.baseline}, interleaved sample by sample ...")
    run.confirmation = confirmation(run, quick)
    c = run.confirmation
    if c is None:
        return
    for r in c.ratios:
        say(f"  {ratio_line(r)}")
    for t in c.ties:
        say(f"  tie: {t.winner} over {t.loser}: {t.why}")
    if c.note:
        say(f"  {c.note}")
