"""Re-measure baseline and candidate on this machine, interleaved A B B A, for `mcbench gate --remeasure N`.

Two runs recorded hours apart on a shared CI runner differ by more than most regressions; alternating samples of both
on the same machine in the same minute cancels that drift, so the comparison sees only the change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError
from mcbench.base.text import first_line
from mcbench.bench.isolate import ChildError, call_in_child
from mcbench.optimizer.artifact import Artifact, generated_inputs
from mcbench.optimizer.targets import Session, Target, open_session, set_ort_global_pool
from mcbench.reports.gate import GateDataError, Remeasured
from mcbench.reports.gate_budgets import Defaults
from mcbench.reports.gate_stats import compare_rounds, leaves_slowdown_open
from mcbench.reports.schema import RunResult

# Causes of the A/A false alarms this fixes (issue 19): samples rounded to whole microseconds made sub-100 us medians
# step in 2-3% quanta and collapsed the bootstrap; A always ran first in a round; no warm-up after a switch; and
# the samples of one round were treated as independent when they share the machine's state (the comparison now
# takes the round as its unit: reports.gate_stats.compare_rounds).
# Then the cause of missed slowdowns: a round ran one 20 ms series of A, then one of B. A two-thread session on a
# shared two-core machine runs in one of a few speeds for tens of milliseconds at a time (its worker thread has a core
# to itself, or shares it with other work); whole series landed in different states, so one round's ratio was 0.7 or
# 1.4 in an A/A pair (per-round log ratios spread with sd 0.25), and a +20% slowdown's interval reached below 1.
# Now: float microseconds from perf_counter_ns, several calls per sample when one is under MIN_SAMPLE_NS, and inside a
# round A and B alternate sample by sample in the order A B B A A B ... (the round after starts with B), a sample
# that follows the other side's after one untimed call of its own session (the warm-up at the switch; in A B B A
# order both sides have as many samples after a switch as after their own); so both sides of a round see the same
# machine states, and the per-round ratio keeps only the difference between them (sd 0.002-0.03 on the same pairs).
SAMPLES_PER_ROUND = 50
WARMUP_CALLS = 5  # before a series, and before the first round
SWITCH_WARMUP_CALLS = 1  # untimed calls before a sample that follows the other side's
MIN_SAMPLE_NS = 100_000
MIN_SERIES_NS = 20_000_000  # a side's series in one round lasts at least 20 ms: a 5 ms one is at the mercy of
# one scheduler time slice on a busy machine, which made the per-round ratios of fast models noisy


Call = Callable[[], Any]  # one zero-argument call to time, e.g. functools.partial(session.run, feeds)
Rounds = list[list[float]]  # one series of samples (microseconds per call) per round


def call_ns(call: Call) -> int:
    """The median time of one call (of several: one call can be descheduled on a busy machine)."""
    call()
    times = []
    for _ in range(11):
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
    return max(sorted(times)[5], 1)


def one_call_ns(session: Session, feeds: dict[str, Any]) -> int:
    return call_ns(partial(session.run, feeds))


def calls_per_sample(session: Session, feeds: dict[str, Any], min_sample_ns: int = MIN_SAMPLE_NS) -> int:
    """How many calls one sample times so that a sample lasts at least `min_sample_ns` (timer resolution, jitter)."""
    return max(1, -(-min_sample_ns // one_call_ns(session, feeds)))


def sample_plan(one_ns: int, samples: int, min_series_ns: int = MIN_SERIES_NS) -> tuple[int, int]:
    """(calls a sample, samples a series): a sample lasts MIN_SAMPLE_NS, a series `min_series_ns` and at least
    `samples` samples, for a call of `one_ns`."""
    calls = max(1, -(-MIN_SAMPLE_NS // one_ns))
    return calls, max(samples, -(-min_series_ns // (one_ns * calls)))


def series_us(session: Session, feeds: dict[str, Any], samples: int, calls: int) -> list[float]:
    """`samples` timings in float microseconds per call, each over `calls` calls, after a warm-up."""
    run = partial(session.run, feeds)
    for _ in range(WARMUP_CALLS):
        run()
    return [sample_us(run, calls, 0) for _ in range(samples)]


def sample_us(call: Call, calls: int, warmup: int = SWITCH_WARMUP_CALLS) -> float:
    """One timing in float microseconds per call, over `calls` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(calls):
        call()
    return (clock() - t0) / calls / 1e3


def turn_order(names: list[str], turn: int) -> tuple[str, ...]:
    """The names rotated by `turn`: for two sides A B, then B A (so a round reads A B B A A B ...)."""
    k = turn % len(names)
    return tuple(names[k:] + names[:k])


@dataclass(frozen=True)
class Interleaved:
    """What interleaved_calls timed: name -> one series of samples (float microseconds per call) per round."""

    rounds: dict[str, Rounds]
    orders: list[tuple[str, ...]]  # the order of each round's first turn (the turns after it rotate on)
    calls: int  # calls a sample
    samples: int  # samples a side in each round


def interleaved_calls(
    calls: dict[str, Call], rounds: int, samples: int = SAMPLES_PER_ROUND, min_series_ns: int = MIN_SERIES_NS,
    first_round: int = 0,
) -> Interleaved:
    """`rounds` rounds of every call, interleaved sample by sample: turn t of round i times each call once, in the
    names' order rotated by i + t (for two: A B, B A, A B ...; the next round starts with B A), a warm-up call at
    every switch; a side's samples in one round are at least `samples` and last at least `min_series_ns` together,
    each of as many calls as make the first call's sample last MIN_SAMPLE_NS. `first_round` continues an earlier
    batch's order. The gate's re-measurement (two sessions) and the benchmarks (any number of calls) time with it."""
    names = list(calls)
    per_sample, samples = sample_plan(call_ns(calls[names[0]]), samples, min_series_ns)
    for call in calls.values():
        for _ in range(WARMUP_CALLS):
            call()
    out: dict[str, Rounds] = {name: [] for name in names}
    orders = []
    last = None
    for i in range(first_round, first_round + rounds):
        orders.append(turn_order(names, i))
        series: dict[str, list[float]] = {name: [] for name in names}
        for j in range(samples):
            for name in turn_order(names, i + j):
                series[name].append(sample_us(calls[name], per_sample, SWITCH_WARMUP_CALLS if name != last else 0))
                last = name
        for name in names:
            out[name].append(series[name])
    return Interleaved(out, orders, per_sample, samples)


def interleaved_rounds(
    session_a: Session, session_b: Session, feeds: dict[str, Any], rounds: int, samples: int = SAMPLES_PER_ROUND,
    min_series_ns: int = MIN_SERIES_NS, first_round: int = 0,
) -> tuple[Rounds, Rounds]:
    """interleaved_calls for two sessions on the same feeds, A B B A ...: (A's rounds, B's rounds). `first_round`
    continues an earlier batch's order (round k starts with A when k is even)."""
    timed = interleaved_calls({"a": partial(session_a.run, feeds), "b": partial(session_b.run, feeds)}, rounds,
                              samples, min_series_ns, first_round)
    return timed.rounds["a"], timed.rounds["b"]


def settled_rounds(
    session_a: Session, session_b: Session, feeds: dict[str, Any], rounds: int, defaults: Defaults,
    samples: int = SAMPLES_PER_ROUND,
) -> tuple[Rounds, Rounds]:
    """`rounds` interleaved rounds, then more batches of `rounds` while their comparison leaves a `min_effect`
    slowdown open (reports.gate_stats.leaves_slowdown_open), up to `defaults.max_rounds_factor` x `rounds` in all.

    Why: a noisy variant (a two-thread session on a shared two-core runner: per-sample CV 0.7-0.8) gave an interval
    straddling +5% in 2 of 20 A/A pairs, and the gate said "inconclusive" (exit 3, a failed build); an interval
    narrows as 1/sqrt(rounds), so spending more rounds on exactly those cases answers them instead."""
    a, b = interleaved_rounds(session_a, session_b, feeds, rounds, samples)
    while len(a) < rounds * defaults.max_rounds_factor and leaves_slowdown_open(
            compare_rounds(a, b, min_effect=defaults.min_effect, confidence=defaults.confidence,
                           max_cv=defaults.max_cv), defaults.min_effect):
        more = min(rounds, rounds * defaults.max_rounds_factor - len(a))
        more_a, more_b = interleaved_rounds(session_a, session_b, feeds, more, samples, first_round=len(a))
        a, b = a + more_a, b + more_b
    return a, b


def rounds_note(asked: int, got: int, min_effect: float) -> str:
    """What the message says when the gate added rounds ('' when it did not)."""
    if got == asked:
        return ""
    return f"{got} rounds, not {asked}: the first {asked} left a +{min_effect:.0%} slowdown open"


# Then the cause of the misses left on two-thread onnxruntime sessions: each session had its own intra-op thread
# pool, so A's and B's worker threads were placed by the scheduler each on its own, and on a loaded two-core machine
# one session stayed the faster for a whole round (per-round sd of A/A log ratios 0.005-0.30). Now the onnxruntime
# pairs of one thread count are timed on one process-wide pool (0.001-0.023), in a child process: onnxruntime fixes
# that pool's size with the first session that uses it and from then on refuses a session with a pool of its own,
# so the gate's (or a test's, or an API user's) own process is never switched over.
SHARED_POOL_CHILD_TIMEOUT_S = 24 * 3600.0  # the gate had no time limit before; a child only needs one against hangs


def variant_spec(run: RunResult, name: str) -> tuple[Artifact, Target]:
    """How to rebuild a variant's in-process session, from its record; a GateDataError if it cannot be."""
    v = run.variant(name)
    where = f"{run.run_id}/{name}"
    try:
        artifact = Artifact.from_dict(v.artifact)
        target = Target.from_dict(v.settings["in_process"])
    except (KeyError, TypeError, ValueError, UserError) as exc:
        raise GateDataError(f"{where}: the results do not say how to rebuild the session ({exc})") from None
    if not Path(artifact.path).exists():
        raise GateDataError(f"{where}: artifact {artifact.path} is gone; re-run `mcbench run` for it or drop "
                             "--remeasure to compare the stored samples")
    return artifact, target


def variant_session(run: RunResult, name: str) -> tuple[Session, Artifact]:
    artifact, target = variant_spec(run, name)
    return open_session(artifact, target), artifact


@dataclass(frozen=True)
class Pair:
    """One variant's two sides to time against each other: (artifact, target) of A (the baseline) and of B."""

    name: str
    a: tuple[Artifact, Target]
    b: tuple[Artifact, Target]


def shares_pool(pair: Pair) -> bool:
    """Both sides are onnxruntime on the CPU with the same thread count: they can run on one process-wide pool."""
    ta, tb = pair.a[1], pair.b[1]
    return ta.runtime == tb.runtime == "onnxruntime" and ta.device == tb.device == "cpu" and ta.threads == tb.threads


def pool_note(pair: Pair) -> str:
    """How the pair's threads were set up, for the gate's message ('' for torch and OpenVINO)."""
    ta, tb = pair.a[1], pair.b[1]
    if shares_pool(pair):
        size = f"{ta.threads} intra-op thread{'' if ta.threads == 1 else 's'}" if ta.threads else "default size"
        return f"one shared onnxruntime thread pool, {size}"
    if "onnxruntime" not in (ta.runtime, tb.runtime):
        return ""
    why = f"threads {ta.threads} vs {tb.threads}" if ta.threads != tb.threads else f"device {ta.device}/{tb.device}"
    return f"per-session onnxruntime thread pools ({why})"


PairFn = Callable[..., Any]  # fn(session_a, session_b, feeds, *args): a module-level function (it may go to a child)


def measure_pairs(pairs: list[Pair], fn: PairFn, *args: Any, shared_pool: bool = True) -> dict[str, tuple[Any, str]]:
    """`fn(session_a, session_b, feeds, *args)` for every pair: name -> (its result, pool_note).

    The pairs that share_pool run in one child process per thread count, every onnxruntime session of it on one
    process-wide pool of that size (both sides' worker threads are the same threads, so the scheduler cannot favour
    one side); the others here, each session with its own threads, as before. `shared_pool=False` runs every pair
    here on per-session pools (the gate before; for benchmarks/gate_calibration.py's comparison)."""
    out: dict[str, tuple[Any, str]] = {}
    groups: dict[int | None, list[Pair]] = {}
    for pair in pairs:
        if shared_pool and shares_pool(pair):
            groups.setdefault(pair.a[1].threads, []).append(pair)
    for threads, group in groups.items():
        try:
            results = call_in_child(on_shared_pool, threads, group, fn, args, timeout_s=SHARED_POOL_CHILD_TIMEOUT_S)
        except ChildError as exc:
            raise GateDataError(f"{', '.join(p.name for p in group)}: re-measuring on a shared onnxruntime thread pool "
                                f"failed in its child process: {first_line(exc)}") from None
        out.update((p.name, (r, pool_note(p))) for p, r in zip(group, results, strict=True))
    for pair in pairs:
        if pair.name not in out:
            sessions = open_session(*pair.a), open_session(*pair.b)
            feeds = generated_inputs(pair.a[0].inputs, 1)[0]
            note = pool_note(pair) if shared_pool or not pool_note(pair) else "per-session onnxruntime thread pools"
            out[pair.name] = (fn(*sessions, feeds, *args), note)
    return {p.name: out[p.name] for p in pairs}


def on_shared_pool(threads: int | None, pairs: list[Pair], fn: PairFn, args: tuple[Any, ...]) -> list[Any]:
    """In a fresh process (a child): size onnxruntime's global pool, then `fn` for every pair, its sessions on it."""
    set_ort_global_pool(threads)
    results = []
    for pair in pairs:
        session_a = open_session(*pair.a, ort_global_pool=True)
        session_b = open_session(*pair.b, ort_global_pool=True)
        feeds = generated_inputs(pair.a[0].inputs, 1)[0]
        results.append(fn(session_a, session_b, feeds, *args))
        del session_a, session_b
    return results


def remeasure(baseline: RunResult, run: RunResult, rounds: int, defaults: Defaults | None = None) -> Remeasured:
    """Fresh interleaved rounds for every variant measured in both runs (settled_rounds: more where `rounds` leave a
    slowdown open): name -> (baseline, candidate, a note on the thread pools and any added rounds)."""
    defaults = defaults or Defaults()
    names = [v.name for v in run.variants if v.status == "ok"
             and any(b.name == v.name and b.status == "ok" for b in baseline.variants)]
    if not names:
        raise GateDataError("no variant was measured in both runs; nothing to re-measure")
    pairs = [Pair(name, variant_spec(baseline, name), variant_spec(run, name)) for name in names]
    measured = measure_pairs(pairs, settled_rounds, rounds, defaults)
    return {name: (a, b, "; ".join(filter(None, (note, rounds_note(rounds, len(a), defaults.min_effect)))))
            for name, ((a, b), note) in measured.items()}
