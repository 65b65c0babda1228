"""The load stage: per-step figures from records, stability, capacity, and sweeps against the real server.

The "model with a known service time" is the real server with its `--delay-ms` test hook: every model
call also sleeps that long, so the sweep must find at least that latency and at most that rate.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.launcher import serve_in_subprocess
from mcbench.bench.load import (
    Endpoint,
    Records,
    Requests,
    run_load,
    stop_reason,
)
from mcbench.bench.load_plan import UNBOUNDED_P99_MS, LoadPlan
from mcbench.bench.load_records import is_stable, step_from_records
from mcbench.bench.load_settings import LoadSettings, LoadSettingsError
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.targets import Target
from mcbench.reports.capacity import capacity
from mcbench.reports.schema import LatencyStats, LoadResult, LoadStep
from tests.conftest import make_linear_onnx

KINDS = ["", "HTTP 503", "ConnectionRefusedError"]


def records(rows: list[tuple], cpu: list[float] | None = None) -> Records:
    return Records.from_rows(np.array(rows, dtype=float).reshape(-1, len(rows[0]) if rows else 5), KINDS, cpu)


RULES = LoadPlan(step_seconds=4, warmup_s=0.5)


def steady(rate: float, latency_s: float, start: float = 0.0, end: float = 4.0) -> list[tuple]:
    return [(t, latency_s, 200, 0, 0) for t in np.arange(start, end, 1 / rate)]


def test_step_counts_only_its_measured_span_and_reports_errors_and_checks() -> None:
    rows = steady(200, 0.002) + [(0.1, 0.001, 200, 0, 0), (1.0, 0.5, 503, 1, 0), (2.0, 0.004, 0, 2, 0),
                                 (3.0, 0.003, 200, 0, 1), (3.1, 0.003, 200, 0, 2)]
    step = step_from_records(records(rows, [40.0, 95.0]), [(0.5, 4.0)], 2, "closed", RULES)
    assert step.requests == 700 + 4 and step.failures == 2
    assert step.errors == {"HTTP 503": 1, "ConnectionRefusedError": 1}
    assert step.throughput_rps == pytest.approx(702 / 3.5)
    assert step.latency.p50_ms == pytest.approx(2.0) and step.p999_ms >= step.latency.p99_ms
    assert (step.checked, step.mismatches) == (2, 1)
    assert step.loadgen_cpu_percent == 95.0 and step.loadgen_saturated
    assert len(step.windows) == 4 and step.stable
    assert (step.server_timed, step.server_p50_ms, step.server_model_p50_ms, step.outside_server_p50_ms) == (
        0, None, None, None)  # rows without the server's times: a server that sends no Server-Timing


def test_the_servers_own_times_split_a_steps_latency() -> None:
    """Per answer: latency 2 ms, the server's handler 1.5 ms of it, the model 1.2; a batched answer has no model
    time, a failed one is not counted, and an answer without the header counts in no figure of the split."""
    nan = float("nan")
    rows = ([(0.5 + i / 100, 0.002, 200, 0, 0, 1.2, 1.5, nan) for i in range(100)]
            + [(1.6, 0.004, 200, 0, 0, nan, 3.5, nan), (1.7, 0.5, 503, 1, 0, 0.1, 0.2, nan),
               (1.8, 0.003, 200, 0, 0, nan, nan, nan)])
    step = step_from_records(records(rows), [(0.5, 4.0)], 1, "closed", RULES)
    assert step.server_timed == 101 and step.server_p50_ms == 1.5 and step.server_model_p50_ms == 1.2
    assert step.outside_server_p50_ms == pytest.approx(0.5)
    assert step.send_lag_p50_ms is None and step.send_lag_p99_ms is None  # a closed loop sends when it may


def test_an_open_steps_send_lag_counts_every_request_it_began() -> None:
    """The generator began 99 requests 0.1 ms after their scheduled starts and one (a failure) 5 ms after."""
    rows = [(0.5 + i / 100, 0.002, 200, 0, 0, 1.2, 1.5, 0.0001) for i in range(99)] + [(1.6, 0.5, 503, 1, 0, 0.1,
                                                                                        0.2, 0.005)]
    step = step_from_records(records(rows), [(0.5, 4.0)], 1, "open", RULES, offered_rps=100)
    assert step.send_lag_p50_ms == pytest.approx(0.1)
    assert step.send_lag_p99_ms == pytest.approx(0.1 + 0.01 * 4.9)  # numpy's linear p99 of 100


def test_a_step_whose_rate_drifts_is_unstable() -> None:
    rows = steady(400, 0.002, 0, 2) + steady(150, 0.002, 2, 4)
    step = step_from_records(records(rows), [(0.0, 4.0)], 1, "closed", RULES)
    assert [round(w["rps"]) for w in step.windows] == [400, 400, 150, 150] and step.stable is False


def test_stability_needs_enough_answers_and_allows_counting_noise() -> None:
    few = [{"answers": 50, "rps": 50.0, "p99_ms": 2.0}] * 3
    assert not is_stable(few, RULES)
    noisy = [{"answers": 150, "rps": r, "p99_ms": 2.0} for r in (150.0, 180.0, 160.0)]  # 3/sqrt(150) = 24%
    assert is_stable(noisy, RULES)
    slow_tail = [{"answers": 1000, "rps": 1000.0, "p99_ms": p} for p in (2.0, 2.1, 3.0)]
    assert not is_stable(slow_tail, RULES)


def lat(p99_ms: float) -> LatencyStats:
    return LatencyStats(100, p99_ms / 2, p99_ms * 0.9, p99_ms, p99_ms / 2, 0.1, 0.1, p99_ms)


def step(rps: float, p99_ms: float, mode: str = "open", failures: int = 0, stable: bool = True) -> LoadStep:
    return LoadStep(1, 10.0, 1000, failures, rps, lat(p99_ms), mode=mode, offered_rps=rps if mode == "open" else None,
                    stable=stable)


def load_result(closed: list[LoadStep], opened: list[LoadStep]) -> LoadResult:
    return LoadResult(closed, [0], [1], False, 1, 0, 0, open_steps=opened)


def test_capacity_from_the_open_loop_replicas_and_cost() -> None:
    load = load_result([step(900, 5, "closed")], [step(300, 4), step(600, 9), step(700, 30), step(800, 8, failures=2)])
    cap = capacity(load, budget_p99_ms=10, target_rps=2000, cost_per_hour=1.5)
    assert cap.max_rps_under_budget == 600 and cap.basis == "open-loop"
    assert cap.replicas == 4 and cap.cost_per_hour == pytest.approx(6.0)
    assert cap.cost_per_million == pytest.approx(1.5 / (600 * 3600) * 1e6)


def test_capacity_from_the_closed_loop_only_where_no_open_loop_ran() -> None:
    closed = [step(500, 5, "closed", stable=False), step(600, 20, "closed")]
    cap = capacity(load_result(closed, []), 10)
    assert (cap.max_rps_under_budget, cap.basis, cap.replicas) == (
        500, "closed-loop (no open-loop sweep ran) (unstable step)", None)
    failed_open = capacity(load_result(closed, [step(300, 50), step(450, 8, failures=3)]), 10, 100, 2.0)
    assert failed_open.max_rps_under_budget is None and failed_open.cost_per_million is None
    assert failed_open.basis == ("none: the open loop's lowest rate, 300 req/s offered, already failed the budget "
                                 "or had errors; capacity is below it")
    bound = capacity(load_result([], [step(300, 4), step(400, 6)]), 10)
    assert bound.basis == "open-loop (lower bound: no step of the sweep passed the budget)"
    none = capacity(load_result([step(500, 50, "closed")], []), 10, 100, 2.0)
    assert none.max_rps_under_budget is None and none.basis.startswith("none") and none.cost_per_million is None


def test_a_sweep_stops_past_the_budget_on_errors_and_on_a_shortfall() -> None:
    rules = LoadPlan(step_seconds=4, warmup_s=0.5, budget_p99_ms=10)
    assert stop_reason(step(100, 5), rules) is None
    assert stop_reason(step(100, 12), rules) == "p99 12.00 ms passed the 10 ms budget at 100 req/s"
    failed = step(100, 5, failures=3)
    failed.errors = {"HTTP 503": 3}
    assert stop_reason(failed, rules) == "errors at 100 req/s: 3 HTTP 503"
    short = step(50, 5)
    short.offered_rps = 100
    assert "cannot keep up" in stop_reason(short, rules)


def write_spec(tmp: Path) -> Path:
    artifact = Artifact(make_linear_onnx(tmp / "m.onnx"), "onnx", (InputSpec("x", (1, 4)),))
    spec = tmp / "server.json"
    spec.write_text(json.dumps({"name": "m", "artifact": artifact.to_dict(),
                                "target": Target("onnxruntime", threads=1).to_dict()}))
    return spec


def split_cores() -> tuple[list[int], list[int]]:
    cores = sorted(os.sched_getaffinity(0))
    return ([cores[0]], [cores[1]]) if len(cores) > 1 else (cores, cores)


def linear(x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)  # the weights make_linear_onnx uses
    w, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    return x @ w + b


@pytest.mark.slow
def test_sweeps_recover_a_known_service_time_and_check_answers(tmp_path: Path) -> None:
    """A 20 ms model: one closed-loop user sees p50 >= 20 ms and at most 50 req/s (what HTTP and a busy
    machine add is not asserted: tests check behaviour, not speed); the open loop at 20 req/s holds the
    rate; answers are checked, and a deliberately wrong expected output is caught."""
    server_cores, loadgen_cores = split_cores()
    feeds = [{"x": np.full((1, 4), i, np.float32)} for i in range(3)]
    expected = [[linear(f["x"])] for f in feeds]
    expected[2] = [expected[2][0] + 1.0]  # the "offline output" for request 2 is wrong on purpose
    rules = LoadPlan(step_seconds=4, warmup_s=1, max_step_seconds=4, budget_p99_ms=500, check_every=1)
    with serve_in_subprocess(write_spec(tmp_path), server_cores, extra=["--delay-ms", "20"]) as server:
        result = run_load(Endpoint(server.url, "m"), Requests.encode(feeds, expected), [1], [20.0], rules,
                          loadgen_cores, server_cores, 1, tmp_path / "load")
    closed, opened = result.steps[0], result.open_steps[0]
    print([(s.mode, s.requests, s.throughput_rps, s.latency.p50_ms, s.latency.p99_ms) for s in (closed, opened)])
    # Lower bounds only: the service time is set, what HTTP and a busy machine add on top is not ours to assert.
    assert closed.latency.p50_ms >= 20.0 and closed.latency.min_ms >= 20.0  # no answer can beat the service time
    assert 0 < closed.throughput_rps <= 50.5  # one user can never beat 1 / service time
    assert opened.mode == "open" and opened.offered_rps == 20.0 and opened.latency.min_ms >= 20.0
    assert opened.failures == 0 and 10 <= opened.throughput_rps <= 30  # Poisson arrivals over 3 s
    for s in (closed, opened):  # mcbench's server says where its time went: the 20 ms inside its handler
        assert s.server_timed == s.requests - s.failures and s.server_model_p50_ms >= 20.0
        assert s.server_p50_ms >= s.server_model_p50_ms and s.outside_server_p50_ms > 0
        assert s.latency.p50_ms >= s.server_p50_ms
    assert closed.send_lag_p99_ms is None and 0 <= opened.send_lag_p50_ms <= opened.send_lag_p99_ms
    assert result.checked == closed.checked + opened.checked > 0
    assert 0 < result.mismatches < result.checked  # every third request's expected answer was wrong
    assert result.locust_total_failures == 0 and (tmp_path / "load" / "closed_1_run0_stats.csv").exists()


@pytest.mark.slow
def test_a_slow_models_open_loop_is_not_run_on_too_few_arrivals(tmp_path: Path) -> None:
    """A 300 ms model peaks at 3.3 req/s at most: half of that sends 4 requests in a quick step's 2.5 counted
    seconds (none at all 3% of the time), so the open sweep is not run, and the result says why."""
    from mcbench.cli import build_parser, run_config

    plan = run_config(build_parser().parse_args(["run", "--quick"])).load
    server_cores, loadgen_cores = split_cores()
    rules = LoadPlan(step_seconds=3, warmup_s=0.5, max_step_seconds=3, budget_p99_ms=5000)
    with serve_in_subprocess(write_spec(tmp_path), server_cores, extra=["--delay-ms", "300"]) as server:
        result = run_load(Endpoint(server.url, "m"), Requests.encode([{"x": np.ones((1, 4), np.float32)}]), [1],
                          plan.open_rates, rules, loadgen_cores, server_cores, 1, tmp_path / "load")
    assert result.steps[0].requests > 0 and result.open_steps == []
    assert re.fullmatch(r"not run: the closed loop's peak of [0-3]\.\d req/s is too slow for an open step to expect "
                        r"10 arrivals \(give --rates to run one anyway\)", result.stopped["open"])


def test_open_rates_are_the_fractions_that_expect_ten_arrivals_a_step() -> None:
    from mcbench.config import LoadPlan

    quick = LoadPlan(users=(1, 4), step_seconds=3.0, warmup_s=0.5, max_step_seconds=3.0, rate_fractions=(0.5,))
    assert quick.open_rates(8.0) == [4.0] and quick.open_rates(7.8) == []  # 10 arrivals in 2.5 s: 4 req/s
    assert LoadPlan().open_rates(6.0) == [4.2, 5.1, 6.0, 6.9]  # 3 req/s would expect 9 in the counted 3 s
    assert LoadPlan(rates=(0.5,)).open_rates(6.0) == [0.5]  # rates given are run as given


@pytest.mark.slow
def test_distributed_mode_with_two_workers_adds_up(tmp_path: Path) -> None:
    server_cores, loadgen_cores = split_cores()
    rules = LoadPlan(step_seconds=3, warmup_s=0.5, max_step_seconds=3, budget_p99_ms=UNBOUNDED_P99_MS)
    with serve_in_subprocess(write_spec(tmp_path), server_cores) as server:
        result = run_load(Endpoint(server.url, "m"), Requests.encode([{"x": np.ones((1, 4), np.float32)}]), [2],
                          [40.0], rules, loadgen_cores, server_cores, 1, tmp_path / "load", workers=2)
    files = sorted((tmp_path / "load").glob("closed_2_run0.samples.*.npz"))
    assert len(files) == 2  # one record file a worker
    per_worker = [len(np.load(f)["records"]) for f in files]
    assert all(n > 0 for n in per_worker)  # each worker ran one of the two users
    assert result.locust_workers == 2
    assert result.recorded_requests == result.locust_total_requests  # our rows and Locust's own count agree
    assert result.steps[0].failures == 0 and result.open_steps[0].failures == 0


def test_the_load_table_shows_the_servers_share_only_where_it_said() -> None:
    from types import SimpleNamespace

    from mcbench.load_cmd import load_table

    told = step(100, 5)
    told.server_timed, told.server_p50_ms, told.server_model_p50_ms = 300, 0.75, 0.5
    told.mode, told.offered_rps = "closed", None
    late = step(50, 5)
    late.send_lag_p99_ms = 0.25
    lines = load_table(SimpleNamespace(load=load_result([told], [late]), capacity=None)).splitlines()
    assert lines[0].split()[:9] == ["sweep", "level", "offered", "achieved", "p50", "ms", "server", "model", "p99"]
    assert lines[0].split()[-3:] == ["late", "p99", "stable"]
    assert lines[1].split()[6:8] == ["0.75", "0.50"] and lines[1].split()[-2] == "-"
    assert lines[2].split()[-2] == "0.25"  # the open step's lag
    assert lines[3] == "server, model: the server's own p50s by its Server-Timing header (the handler; the model call)"
    assert lines[4].startswith("late p99: open loop, how late the generator sent")
    silent = load_table(SimpleNamespace(load=load_result([step(100, 5, "closed")], []), capacity=None)).splitlines()
    assert "server" not in silent[0] and len(silent) == 2  # another KServe server, no open loop: no column, no note


def test_run_flags_shape_the_load_plan() -> None:
    from mcbench.cli import build_parser, run_config

    args = build_parser().parse_args(["run", "--quick", "--rates", "10,20.5", "--budget-p99-ms", "50",
                                      "--target-rps", "900", "--cost-per-hour", "1.2", "--locust-workers", "2",
                                      "--max-batch", "4", "--step-seconds", "8", "--arrivals", "constant"])
    plan = run_config(args).load
    assert plan.rates == (10.0, 20.5) and plan.open_rates(1000.0) == [10.0, 20.5]
    assert (plan.budget_p99_ms, plan.target_rps, plan.cost_per_hour) == (50.0, 900.0, 1.2)
    assert (plan.locust_workers, plan.max_batch, plan.arrivals) == (2, 4, "constant")
    assert plan.step_seconds == 8.0 and plan.max_step_seconds == 8.0 and plan.warmup_s == 0.5
    assert run_config(build_parser().parse_args(["run", "--quick"])).load.open_rates(200.0) == [100.0]


def test_the_profile_budget_target_and_cost_win_over_the_plan() -> None:
    from types import SimpleNamespace

    from mcbench.config import LoadPlan
    from mcbench.load_stage import capacity_of

    plan = LoadPlan(budget_p99_ms=100, target_rps=10, cost_per_hour=9.0)
    load = load_result([], [step(300, 4), step(600, 9)])
    profile = SimpleNamespace(latency_budget_ms=5.0, target_rps=1000.0, cost_per_hour=2.0)
    cap = capacity_of(load, plan, profile)
    assert (cap.max_rps_under_budget, cap.replicas, cap.cost_per_hour) == (300, 4, 8.0)
    cap = capacity_of(load, plan, None)
    assert (cap.max_rps_under_budget, cap.replicas, cap.cost_per_hour) == (600, 1, 9.0)


def test_rows_locust_never_completed_are_not_compared_with_its_count() -> None:
    from mcbench.bench.load import locust_seen

    rec = records([(0.1, 0.002, 200, 0, 0), (0.2, 0.5, 503, 1, 0), (0.3, 2.0, 0, 3, 0), (0.4, 0.0, 0, 4, 0)])
    rec.error_kinds = KINDS + ["no answer by the end of the step", "load generator backlog"]
    assert locust_seen(rec) == 2


@pytest.mark.parametrize(("yield_us", "stretches_us"), [(400, [0, 400, 200, 40]), (0, [0, 0, 0, 0])])
def test_the_open_loop_never_sends_early_and_yields_at_most_a_fifth_of_its_time(yield_us, stretches_us,
                                                                                tmp_path) -> None:
    """The generator's wait for a scheduled send (in its own process: importing it patches the process with gevent):
    it never returns before the time, whatever the last stretch it yields; and that stretch is cut so that yielding
    takes at most a fifth of the process's time at 0, 100, 1000 and 5000 sends a second."""
    import subprocess
    import sys

    code = (
        "import json, time\n"
        "from mcbench.bench import locustfile as L\n"
        "early = 0\n"
        "for stretch in (0.0, 0.0004, 0.01):\n"
        "    for _ in range(10):\n"
        "        when = time.perf_counter() + 0.002\n"
        "        L.sleep_until(when, stretch)\n"
        "        early += time.perf_counter() < when\n"
        "print(json.dumps({'early': early, 'stretch': [L.yield_stretch(r) for r in (0, 100, 1000, 5000)]}))\n")
    settings = LoadSettings(yield_us=yield_us).write(tmp_path / "settings.json")
    env = {**os.environ, "MCBENCH_LOAD_SETTINGS": str(settings)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["early"] == 0
    assert [s * 1e6 for s in got["stretch"]] == pytest.approx(stretches_us)


def test_the_settings_file_goes_through_json_whole_and_a_worker_keeps_its_own_fields(tmp_path) -> None:
    sent = LoadSettings(seconds=3.0, grace_s=2.0, rate=40.0, streams=2, arrivals="constant", wake="loop", yield_us=0,
                        path="/v2/models/m/infer", headers={"Authorization": "Bearer t"}, bodies="/b",
                        expected="/b/expected.npz", check_every=5, samples="/w/open_40_run0.samples")
    assert LoadSettings.read(sent.write(tmp_path / "s.json")) == sent
    worker = LoadSettings(worker_name="local-1", setup_wait_s=5.0).with_shared(sent.shared())
    assert (worker.rate, worker.streams, worker.arrivals, worker.wake, worker.headers) == \
        (40.0, 2, "constant", "loop", {"Authorization": "Bearer t"})
    assert (worker.worker_name, worker.setup_wait_s, worker.samples, worker.bodies) == ("local-1", 5.0, "", "")
    with pytest.raises(LoadSettingsError, match="the master sent settings this worker does not know: pace"):
        worker.with_shared({**sent.shared(), "pace": 1})


@pytest.mark.parametrize(("text", "problem"), [
    ('{"wake": "sleep", "streams": 0}', "streams must be 1 or more; wake must be one of thread, loop, got 'sleep'"),
    ('{"rate": "40"}', "rate must be float, got '40'"),
    ('{"seconds": 3, "pace": 1}', "unknown settings pace"),
    ("[1]", "expected a JSON object, got list"),
])
def test_a_bad_settings_file_ends_locust_with_one_line_naming_it(tmp_path, text, problem) -> None:
    """The locustfile reads its settings once, at start-up: a bad file ends Locust at once, with one line."""
    import subprocess
    import sys

    from mcbench.bench.load import LOCUSTFILE

    path = tmp_path / "settings.json"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-t", "1s"],
                         env={**os.environ, "MCBENCH_LOAD_SETTINGS": str(path)}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == f"mcbench: cannot read the load settings {path}: {problem}"
