"""benchmarks/ as a package: every script imports as `benchmarks.NAME` without editing sys.path, and the one
harness they time with (benchmarks.harness, on the gate's interleaved loop) rotates and records as it says."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from benchmarks.harness import ratio_of, session_call, side_by_side

FOLDER = Path(__file__).resolve().parents[1] / "benchmarks"
# a Locust file, run by `locust -f`: importing it imports locust, which patches the process for gevent
NOT_IMPORTED = {"__init__", "soak_locustfile"}
MODULES = sorted(p.stem for p in FOLDER.glob("*.py") if p.stem not in NOT_IMPORTED)


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_imports_as_a_module_of_the_package(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.__doc__, f"benchmarks/{name}.py has no docstring"
    if name != "harness":
        assert f"python -m benchmarks.{name}" in module.__doc__  # its usage line is the way it runs


def test_no_benchmark_edits_sys_path() -> None:
    offenders = [p.name for p in FOLDER.glob("*.py") if "sys.path" in p.read_text()]
    assert offenders == []


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def __call__(self) -> None:
        self.log.append(self.name)


def runs_of(log: list[str]) -> list[list]:
    """The log as [name, consecutive calls] runs."""
    runs: list[list] = []
    for name in log:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return runs


def test_side_by_side_rotates_the_order_every_turn_and_records_every_round() -> None:
    log: list[str] = []
    timed = side_by_side({n: Recorder(n, log) for n in ("a", "b", "c")}, rounds=2, samples=2, seconds=0)
    assert timed.names == ["a", "b", "c"]
    assert timed.timed.orders == [("a", "b", "c"), ("b", "c", "a")]  # round i starts rotated by i
    assert timed.timed.samples == 2 and timed.timed.calls >= 1
    assert {n: [len(r) for r in rounds] for n, rounds in timed.timed.rounds.items()} == {n: [2, 2] for n in "abc"}
    assert all(isinstance(x, float) and x > 0 for rounds in timed.timed.rounds.values() for r in rounds for x in r)
    assert log[:27] == ["a"] * 12 + ["a"] * 5 + ["b"] * 5 + ["c"] * 5  # timing one call of the first, warm-ups
    runs = runs_of(log[27:])
    # turn t of round i is the names rotated by i + t: abc bca | bca cab
    assert [name for name, _ in runs] == list("abcbca" "bcacab")
    assert {n for _, n in runs} == {timed.timed.calls + 1}  # every sample follows a switch: one warm-up call first
    ratio = timed.ratio("b", "a")
    assert len(ratio.per_round) == 2 and ratio.low <= ratio.ratio <= ratio.high
    assert len(timed.round_medians_ms("c")) == 2 and timed.median_ms("c") > 0


def test_two_sides_are_timed_in_the_gates_order() -> None:
    log: list[str] = []
    side_by_side({"a": Recorder("a", log), "b": Recorder("b", log)}, rounds=2, samples=3, seconds=0)
    names = [name for name, _ in runs_of(log[22:])]
    assert names == ["a", "b", "a", "b", "a", "b", "a"]  # a b|b a|a b, then b a|a b|b a: the gate's A B B A


def test_a_ratio_is_the_median_of_the_rounds_ratios_with_its_interval() -> None:
    base = [[10.0, 10.0, 10.0]] * 6 + [[1000.0, 1000.0, 1000.0]]  # one round slowed by other work
    mine = [[5.0, 5.0, 6.0]] * 7
    ratio = ratio_of(base, mine)
    assert ratio.ratio == 0.5 and ratio.per_round[-1] == 0.005
    assert (ratio.low, ratio.high) == (0.005, 0.5)  # 7 rounds: the 95% interval is the extreme ranks
    assert ratio.text() == "0.50x (0.01-0.50)"


def test_a_session_call_runs_its_feeds_in_turn() -> None:
    seen: list[int] = []

    class Session:
        def run(self, feeds: dict) -> None:
            seen.append(feeds["x"])

    call = session_call(Session(), [{"x": 1}, {"x": 2}])
    for _ in range(3):
        call()
    session_call(Session(), {"x": 7})()
    assert seen == [1, 2, 1, 7]


def test_side_by_side_needs_a_call_and_a_round() -> None:
    with pytest.raises(ValueError, match="at least one call and one round"):
        side_by_side({}, rounds=1)


def test_the_generator_ab_compares_fields_of_the_locust_settings_file() -> None:
    from benchmarks.generator_ab import setting_value

    assert setting_value("yield_us", "400") == 400.0 and setting_value("wake", "loop") == "loop"
    with pytest.raises(ValueError, match="wake=sleep: wake must be one of thread, loop, got 'sleep'"):
        setting_value("wake", "sleep")
    with pytest.raises(ValueError, match="the setting must be one of wake, yield_us, max_in_flight, request_timeout_s"):
        setting_value("MCBENCH_YIELD_US", "0")
