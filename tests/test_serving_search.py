"""The serving search's rules, on a table of figures: the order tried, the early stop, the budget, the best."""

from __future__ import annotations

import contextlib

from mcbench.bench.serving import ServingConfig
from mcbench.reports.schema import ServingStep
from mcbench.serving_search import best_trial, configs_to_try, search, why_stop

SLO = 20.0
USERS = (2, 4, 8, 16)  # doubling, for short tables


def table_trial(figures: dict[str, dict[int, tuple[float, float]]], asked: list[tuple[str, int]]):
    """A Trial from {label: {users: (req/s, p99 ms)}}, noting each (label, users) asked for."""
    @contextlib.contextmanager
    def open_config(config: ServingConfig):
        def step(users: int) -> ServingStep:
            asked.append((config.label, users))
            rps, p99 = figures[config.label][users]
            return ServingStep(users, rps, p99 / 2, p99)
        yield step
    return open_config


FIGURES = {
    "1x1t nobatch": {2: (400, 5), 4: (600, 8), 8: (620, 15)},                # saturates at 620: the reference
    "1x1t b4/2ms": {2: (300, 6), 4: (500, 9), 8: (560, 30)},                  # breaks the SLO below 620: cut
    "2x1t nobatch": {2: (500, 4), 4: (800, 6), 8: (900, 12), 16: (990, 25)},  # 900 at the SLO: the best
    "1x1t b8/2ms": {2: (300, 5), 4: (310, 9)},                                # flat far below 900: cut
}


def test_configurations_come_default_first_with_two_instance_counts_and_batching_on_and_off() -> None:
    labels = [c.label for c in configs_to_try(1, batchable=True, runtime="onnxruntime")]
    assert labels == ["1x1t nobatch", "1x1t b4/2ms", "2x1t nobatch", "1x1t b8/2ms", "2x1t b8/2ms", "4x1t nobatch",
                      "1x1t b16/5ms"]
    assert [c.label for c in configs_to_try(4, batchable=False, runtime="openvino")] == [
        "1x4t nobatch", "2x2t nobatch", "1x1t nobatch", "4x1t nobatch", "2x2t nobatch ov:THROUGHPUT/1",
        "4x1t nobatch ov:THROUGHPUT/1"]


def test_a_configuration_that_cannot_beat_the_best_so_far_is_stopped_early() -> None:
    asked: list[tuple[str, int]] = []
    configs = configs_to_try(1, batchable=True, runtime="onnxruntime")[:4]
    trials = search(configs, table_trial(FIGURES, asked), SLO, left_s=lambda: 1e9, step_s=3.0, users=USERS)
    got = [(t.label, t.rps_at_slo, t.outcome, t.stopped) for t in trials]
    assert got == [
        ("1x1t nobatch", 620, "peak", "saturated: throughput flat at 620 req/s from 4 to 8 users"),
        ("1x1t b4/2ms", 500, "cut", "cannot beat the best: p99 30.0 ms passed the 20 ms SLO at 560 req/s, no more "
                                    "than the best's 620"),
        ("2x1t nobatch", 900, "peak", "p99 25.0 ms passed the 20 ms SLO at 16 users"),
        ("1x1t b8/2ms", 310, "cut", "cannot beat the best: throughput flat at 310 req/s from 2 to 4 users, below the "
                                    "best's 900"),
    ]
    assert ("1x1t b8/2ms", 8) not in asked and len(asked) == 3 + 3 + 4 + 2  # the cut one took no third step
    assert best_trial(trials).label == "2x1t nobatch"


def test_the_budget_stops_a_configuration_between_steps_and_leaves_the_rest_untried() -> None:
    left = iter([100.0, 100.0, 100.0, 1.0, 1.0])  # two steps' worth, then the budget is spent
    trials = search(configs_to_try(1, True, "onnxruntime")[:2], table_trial(FIGURES, []), SLO,
                    left_s=lambda: next(left), step_s=3.0, users=USERS)
    assert [(t.outcome, t.stopped, len(t.steps)) for t in trials] == [
        ("budget", "time budget spent before 8 users", 2),
        ("untried", "not tried: the serving search's time budget was spent", 0)]
    assert trials[0].rps_at_slo == 600


def test_failures_stop_a_configuration_and_a_failed_start_is_recorded_not_raised() -> None:
    failing = ServingStep(4, 100.0, 1.0, 2.0, failures=3)
    assert why_stop([failing], None, SLO) == ("peak", "3 failed requests at 4 users")

    @contextlib.contextmanager
    def broken(config: ServingConfig):
        raise RuntimeError("model server exited with code 2 before it was ready: no\nmore")
        yield

    trials = search([ServingConfig(1, 1)], broken, SLO, left_s=lambda: 1e9, step_s=3.0, users=USERS)
    assert (trials[0].outcome, trials[0].stopped) == (
        "error", "RuntimeError: model server exited with code 2 before it was ready: no")


def test_a_knee_between_two_steps_far_apart_gets_one_more_step_halfway() -> None:
    figures = {"1x1t nobatch": {2: (50.0, 40.0), 8: (60.0, 190.0), 4: (58.0, 80.0)}}
    asked: list[tuple[str, int]] = []
    trials = search([ServingConfig(1, 1)], table_trial(figures, asked), 100.0, left_s=lambda: 1e9, step_s=3.0,
                    users=(2, 8, 32))
    assert asked == [("1x1t nobatch", 2), ("1x1t nobatch", 8), ("1x1t nobatch", 4)]
    assert [s.users for s in trials[0].steps] == [2, 4, 8] and trials[0].rps_at_slo == 58.0
    assert trials[0].stopped == "p99 190.0 ms passed the 100 ms SLO at 8 users; then 4 users, between the last two"
