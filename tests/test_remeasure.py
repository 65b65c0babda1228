"""Interleaved re-measurement: float microseconds, several calls a sample for fast sessions, sides alternating sample
by sample."""

from __future__ import annotations

from typing import Any

from mcbench.remeasure import calls_per_sample, interleaved_rounds, sample_plan, series_us


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
