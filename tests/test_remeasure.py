"""Interleaved re-measurement: float microseconds, several calls a sample for fast sessions, sides alternating sample
by sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.targets import Target
from mcbench.remeasure import (
    Pair,
    calls_per_sample,
    interleaved_rounds,
    measure_pairs,
    pool_note,
    sample_plan,
    series_us,
    shares_pool,
)
from mcbench.reports.gate import GateDataError


class Recorder:
    """A stand-in session that records which side ran, in order."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        self.log.append(self.name)
        return []


def test_a_fast_session_is_timed_several_calls_a_sample_in_float_microseconds() -> None:
    log: list[str] = []
    fast = Recorder("a", log)
    assert calls_per_sample(fast, {}, min_sample_ns=10**9) > 1  # a call that appends a name takes well under 1 s
    calls = calls_per_sample(fast, {})
    samples = series_us(fast, {}, 7, calls)
    assert len(samples) == 7 and all(isinstance(s, float) and s > 0 for s in samples)
    assert len(log) == 24 + 5 + 7 * calls  # two calls_per_sample's 12 each, the warm-up, the timed calls


def test_rounds_interleave_the_sides_sample_by_sample_in_abba_order_with_a_warmup_call_at_each_switch() -> None:
    log: list[str] = []
    a, b = Recorder("a", log), Recorder("b", log)
    sa, sb = interleaved_rounds(a, b, {}, rounds=2, samples=3, min_series_ns=0)
    assert [len(r) for r in sa] == [len(r) for r in sb] == [3, 3]
    assert log[:22] == ["a"] * 12 + ["a"] * 5 + ["b"] * 5  # timing one call, then a warm-up of each side
    runs, name = [], None  # the log as (side, consecutive calls)
    for side in log[22:]:
        if side == name:
            runs[-1][1] += 1
        else:
            runs.append([side, 1])
            name = side
    assert [side for side, _ in runs] == ["a", "b", "a", "b", "a", "b", "a"]  # a b|b a|a b, then b a|a b|b a
    calls = runs[0][1] - 1  # a switch: one warm-up call, then a sample of `calls` calls
    assert calls >= 1 and [n for _, n in runs] == [1 + calls] + [1 + 2 * calls] * 5 + [1 + calls]  # no warm-up
    # for the second sample of a pair (b b, a a), nor where round 2 starts with the side that ended round 1


def test_a_series_lasts_long_enough_to_outlive_a_time_slice() -> None:
    assert sample_plan(one_ns=20_000, samples=50) == (5, 200)  # 17 us model: 5 calls a sample, 20 ms a series
    assert sample_plan(one_ns=2_000_000, samples=50) == (1, 50)  # 2 ms model: the floor of 50 samples holds
    assert sample_plan(one_ns=20_000, samples=50, min_series_ns=0) == (5, 50)


def pool_probe(session_a: Any, session_b: Any, feeds: dict[str, Any], tag: str) -> dict[str, Any]:
    """Where and how the pair's sessions run (a module-level function: measure_pairs may send it to a child)."""
    import os

    return {"pid": os.getpid(), "tag": tag, "outputs": [len(s.run(feeds)) for s in (session_a, session_b)],
            "per_session_threads": [s._session.get_session_options().use_per_session_threads
                                    for s in (session_a, session_b)]}


def _pair(name: str, path: Path, threads_a: int | None, threads_b: int | None, runtime: str = "onnxruntime") -> Pair:
    artifact = Artifact(path=path, format="onnx", inputs=(InputSpec("x", (1, 4)),))
    return Pair(name, (artifact, Target(runtime, threads=threads_a)), (artifact, Target(runtime, threads=threads_b)))


def test_onnxruntime_pairs_run_on_one_shared_pool_per_thread_count_in_a_child(linear_onnx: Path) -> None:
    import os

    pairs = [_pair("two", linear_onnx, 2, 2), _pair("one", linear_onnx, 1, 1), _pair("one-too", linear_onnx, 1, 1)]
    out = measure_pairs(pairs, pool_probe, "x")
    assert list(out) == ["two", "one", "one-too"]  # the order of the pairs, whatever the grouping
    (two, two_note), (one, one_note), (one_too, _) = out.values()
    assert two["per_session_threads"] == one["per_session_threads"] == [False, False]  # the global pool, not their own
    assert two["outputs"] == [1, 1] and two["tag"] == "x"
    assert one["pid"] == one_too["pid"]  # one child a thread count ...
    assert len({os.getpid(), two["pid"], one["pid"]}) == 3  # ... and never this process, whose pools stay its own
    assert two_note == "one shared onnxruntime thread pool, 2 intra-op threads"
    assert one_note == "one shared onnxruntime thread pool, 1 intra-op thread"


def test_a_pair_whose_runs_differ_in_threads_runs_here_on_per_session_pools(linear_onnx: Path) -> None:
    import os

    [(result, note)] = measure_pairs([_pair("mixed", linear_onnx, 2, 1)], pool_probe, "y").values()
    assert result["pid"] == os.getpid() and result["per_session_threads"] == [True, True]
    assert note == "per-session onnxruntime thread pools (threads 2 vs 1)"
    [(before, note)] = measure_pairs([_pair("same", linear_onnx, 1, 1)], pool_probe, "w", shared_pool=False).values()
    assert before["pid"] == os.getpid() and before["per_session_threads"] == [True, True]  # the gate before, to compare
    assert note == "per-session onnxruntime thread pools"
    assert pool_note(_pair("t", linear_onnx, 1, 1, runtime="torch")) == ""  # nothing to say for torch or OpenVINO
    assert not shares_pool(_pair("t", linear_onnx, 1, 1, runtime="openvino"))


def test_a_child_that_cannot_open_its_sessions_is_a_gate_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(GateDataError, match="bad: re-measuring on a shared onnxruntime thread pool failed in its"):
        measure_pairs([_pair("bad", bad, 1, 1)], pool_probe, "z")


def scripted_rounds(batches: list[list[float]]) -> Any:
    """A stand-in for interleaved_rounds: batch k gives rounds whose candidate/baseline ratios are batches[k]."""
    calls: list[tuple[int, int]] = []

    def rounds_of(session_a, session_b, feeds, rounds, samples=50, min_series_ns=0, first_round=0):
        ratios = batches[len(calls)][:rounds]
        calls.append((rounds, first_round))
        return [[100.0] * 3 for _ in ratios], [[100.0 * r] * 3 for r in ratios]

    rounds_of.calls = calls  # type: ignore[attr-defined]
    return rounds_of


WIDE = [0.95, 1.12, 0.97, 1.10, 0.98, 1.08]  # interval 0.956-1.112: +5% not ruled out
TIGHT = [0.98, 0.99, 0.98, 0.99, 0.98, 0.99]  # after WIDE, the 12 rounds' interval is 0.973-1.043: ruled out


def test_the_gate_adds_rounds_while_a_slowdown_is_left_open_and_stops_when_it_is_ruled_out(monkeypatch) -> None:
    from mcbench import remeasure as rm
    from mcbench.reports.gate_budgets import Defaults
    from mcbench.reports.gate_stats import compare_rounds, leaves_slowdown_open

    d = Defaults()
    first = compare_rounds([[100.0] * 3] * 6, [[100.0 * r] * 3 for r in WIDE], min_effect=0.05, confidence=0.95,
                           max_cv=0.5)
    assert first.ci_low < 1.05 < first.ci_high and leaves_slowdown_open(first, 0.05)
    fake = scripted_rounds([WIDE, TIGHT * 2, TIGHT * 3])
    monkeypatch.setattr(rm, "interleaved_rounds", fake)
    a, b = rm.settled_rounds(None, None, {}, 6, d)
    assert len(a) == len(b) == 12 and fake.calls == [(6, 0), (6, 6)]  # one more batch, its order continued
    assert rm.rounds_note(6, 12, d.min_effect) == "12 rounds, not 6: the first 6 left a +5% slowdown open"

    fake = scripted_rounds([TIGHT])
    monkeypatch.setattr(rm, "interleaved_rounds", fake)
    assert len(rm.settled_rounds(None, None, {}, 6, d)[0]) == 6 and rm.rounds_note(6, 6, 0.05) == ""

    fake = scripted_rounds([WIDE, WIDE, WIDE, WIDE])  # never settles: stops at max_rounds_factor x the rounds asked
    monkeypatch.setattr(rm, "interleaved_rounds", fake)
    assert len(rm.settled_rounds(None, None, {}, 6, d)[0]) == 18 and len(fake.calls) == 3
    fake = scripted_rounds([WIDE])
    monkeypatch.setattr(rm, "interleaved_rounds", fake)
    assert len(rm.settled_rounds(None, None, {}, 6, Defaults(max_rounds_factor=1))[0]) == 6


def test_a_called_regression_or_a_tight_interval_adds_no_rounds() -> None:
    from mcbench.reports.gate_stats import compare_rounds, leaves_slowdown_open

    def comparison(ratios: list[float]):
        return compare_rounds([[100.0] * 3] * len(ratios), [[100.0 * r] * 3 for r in ratios], min_effect=0.05,
                              confidence=0.95, max_cv=0.5)

    slower = comparison([1.19, 1.21, 1.20, 1.18, 1.22, 1.20])
    assert slower.verdict == "regression" and not leaves_slowdown_open(slower, 0.05)
    assert comparison(TIGHT).verdict == "no change" and not leaves_slowdown_open(comparison(TIGHT), 0.05)
