"""The load test's rules: one type, `LoadPlan`, for the user's settings (flags, run file) and for the sweeps.

`mcbench.config` holds it in a run's configuration; `bench.load` runs the sweeps by it. It lives here, beside the
load generator, because mcbench depends on bench and not the other way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mcbench.base.settings import ConfigError, setting
from mcbench.base.settings_check import validate

BOTH = ("run", "load")  # the flags that `mcbench load` takes too
DEFAULT_SERVING_BUDGET_S = 120.0  # six or more configurations of the recommended variant on the 2-core machine
UNBOUNDED_P99_MS = 3_600_000.0  # the budget's upper bound: a sweep that no step's p99 stops
MIN_OPEN_ARRIVALS = 10  # an open step expecting fewer arrivals in its counted seconds measures nothing (Poisson at
# 1.4 req/s sends none in 2.5 s 3% of the time): a fraction of a slow model's peak below this is not run


@dataclass(frozen=True)
class LoadPlan:
    """The two load sweeps and their rules.

    Closed loop: `users` concurrent users, one step each. Open loop: `rates` requests a second, or,
    where none are given, `rate_fractions` of the closed loop's peak throughput. Each step runs
    `step_seconds` (the first `warmup_s` not counted) and is extended up to `max_step_seconds` until
    its windows agree. A sweep stops at the first step past `budget_p99_ms` or with errors.

    The sweeps run by these fields as given (`run_load` reads `budget_p99_ms` as the budget to stop at: a caller
    with a hardware profile passes a copy holding the profile's); the rules below are fixed, not settings.
    """

    SECTION = "load"
    WINDOWS = 4  # measured windows a run of a step is cut into
    COMPARE_LAST = 3  # a step is stable when its last this-many windows agree
    RPS_TOLERANCE = 0.10  # relative spread (max - min) / median allowed in their throughput
    P99_TOLERANCE = 0.25  # and in their p99
    CLOSED_GRACE_S = 1.0  # time after a step for the last answers: closed loop
    OPEN_GRACE_S = 2.0  # open loop (a schedule's last sends may be just before the end)

    users: tuple[int, ...] = setting(
        (1, 2, 4, 8), flag="--concurrency", commands=BOTH, metavar="1,2,4,8", ge=1, most=10_000, nonempty=True,
        help="closed loop: the concurrent users of each step")
    step_seconds: float = setting(
        4.0, flag="--step-seconds", commands=BOTH, metavar="SECONDS", gt=0, most=3600.0,
        help="seconds a load step runs, then again while its windows disagree, up to --max-step-seconds "
             "(on the command line it also caps the step's warm-up at a quarter of it)")
    warmup_s: float = setting(
        1.0, flag="--step-warmup-seconds", commands=BOTH, metavar="SECONDS", ge=0, most=3600.0,
        help="the first seconds of each load step, not counted; must be shorter than the step")
    max_step_seconds: float = setting(
        12.0, flag="--max-step-seconds", commands=BOTH, metavar="SECONDS", gt=0, most=3600.0,
        help="a step that has not settled is extended up to this many seconds")
    rates: tuple[float, ...] = setting(
        (), flag="--rates", commands=BOTH, metavar="50,100,200", gt=0, most=1_000_000.0,
        help="open loop: arrival rates in req/s (default: rate_fractions of the closed loop's peak)")
    rate_fractions: tuple[float, ...] = setting(
        (0.5, 0.7, 0.85, 1.0, 1.15), flag="--rate-fractions", commands=BOTH, metavar="0.5,1.0", gt=0, most=100.0,
        help="open loop without rates: fractions of the closed loop's peak throughput")
    arrivals: str = setting("poisson", flag="--arrivals", commands=BOTH, choices=("poisson", "constant"),
                            help="open loop arrivals")
    budget_p99_ms: float = setting(
        100.0, flag="--budget-p99-ms", commands=BOTH, metavar="MS", gt=0, most=UNBOUNDED_P99_MS,
        help="p99 budget of the capacity figures, where no hardware profile gives capacity.latency_budget_ms")
    target_rps: float | None = setting(
        None, flag="--target-rps", commands=BOTH, metavar="RPS", gt=0, most=1e9,
        help="load to size replicas for (default: the profile's capacity.target_rps)")
    cost_per_hour: float | None = setting(
        None, flag="--cost-per-hour", commands=BOTH, metavar="COST", gt=0, most=1e6,
        help="cost of one replica-hour (default: the profile's cost_per_hour)")
    locust_workers: int = setting(
        0, flag="--locust-workers", commands=BOTH, metavar="N", ge=0, most=256,
        help="distributed Locust on this machine: a master and N worker processes (0: one Locust process)")
    check_every: int = setting(
        10, flag="--check-every", metavar="N", ge=0, most=1_000_000,
        help="compare every Nth answer with the variant's offline outputs (0: none)")
    max_batch: int = setting(
        1, flag="--max-batch", metavar="N", ge=1, most=4096,
        help="> 1: also load-test with server dynamic batching of up to N requests, to compare "
             "(--max-wait-ms alone means 8)")
    max_wait_ms: float = setting(2.0, flag="--max-wait-ms", metavar="MS", gt=0, most=60_000.0,
                                 help="dynamic batching: longest wait for a batch to fill")
    slo_p99_ms: float | None = setting(
        None, flag="--slo-p99-ms", metavar="MS", gt=0, most=3_600_000.0, legacy=None,
        help="the serving search's SLO: the best server configuration serves the most req/s whose p99 stays within "
             "it (default: the capacity budget, a profile's capacity.latency_budget_ms or else --budget-p99-ms)")
    serving_budget_s: float = setting(
        DEFAULT_SERVING_BUDGET_S, key="serving_budget", flag="--serving-budget", metavar="SECONDS", ge=0,
        most=7 * 86400.0, unit="seconds", legacy=0.0,
        help="wall time of the serving search, which tries server configurations (instances, threads, dynamic "
             "batching) for the recommended variant and up to two more frontier variants (0: none; --quick: 0)")
    answers: str = setting(
        "binary", flag="--answers", commands=BOTH, choices=("binary", "json"),
        help="ask for answers as binary data (the KServe v2 binary tensor extension) or as JSON: "
             "what your clients will ask (a server without the extension answers JSON either way)")

    def __post_init__(self) -> None:
        validate(self)
        if self.step_seconds <= self.warmup_s:
            raise ConfigError(f"a load step of {self.step_seconds} s must be longer than its {self.warmup_s} s warm-up",
                              "load")

    def open_rates(self, closed_peak_rps: float) -> list[float]:
        """The open loop's arrival rates: the given ones, or the fractions of the closed loop's peak at which a step
        expects at least MIN_OPEN_ARRIVALS arrivals in its counted seconds."""
        if self.rates:
            return list(self.rates)
        slowest = max(1.0, MIN_OPEN_ARRIVALS / (self.step_seconds - self.warmup_s))
        return [round(f * closed_peak_rps, 1) for f in self.rate_fractions if f * closed_peak_rps >= slowest]

    @property
    def run_seconds(self) -> int:
        """One Locust run of a step: step_seconds rounded up to whole seconds."""
        return math.ceil(self.step_seconds)
