"""The serving search: which server configuration of a variant serves the most requests a second under a p99 SLO.

Triton's Model Analyzer searches instances, dynamic batching and concurrency per model; this does the same for
mcbench's own server, bounded the way the variant search is. Configurations are tried cheapest and likeliest first,
the default one (one instance on every server core, no batching) first, as the reference. Each is driven by a
closed loop of quadrupling users until its p99 passes the SLO; it stops early where it cannot beat the best so far:

- its p99 passes the SLO at a throughput no higher than the best's throughput at the SLO, or
- its throughput is flat (under FLAT_GAIN more from quadrupling the users: saturated) below the best's.

Where a configuration passed the SLO between two steps more than twice the users apart, one more step halfway
between finds its knee closer. A step that would start past the search's time budget is not run; configurations
not reached are recorded too.
The measurement itself is passed in (`Trial`), so the search's rules are tested without a server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager

from mcbench.bench.serving import ServingConfig
from mcbench.reports.schema import ServingStep, ServingTrial

FLAT_GAIN = 1.05  # more users gained under 5% throughput: the configuration is saturated
USERS = (2, 8, 32, 64)  # closed-loop users of each step: quadrupling reaches the knee in three steps or four (with
# doubling, a configuration took five steps of about 6 s each on the 2-core machine, and 120 s saw only six); at most
# 64, the server's default --max-queue: past it the server answers 503s, which measure the limit, not the model

# `trial(config)` starts a configuration and yields `step(users) -> ServingStep`; it stops it on exit
Trial = Callable[[ServingConfig], AbstractContextManager[Callable[[int], ServingStep]]]
Say = Callable[[str], None]


def configs_to_try(cores: int, batchable: bool, runtime: str) -> list[ServingConfig]:
    """The configurations, likeliest to matter first: the default, then batching, then instances and threads.

    `cores` are the server's; instances share them (threads per instance = cores // instances, at least 1).
    Batching is tried only where the model takes a batch (on any axis); OpenVINO's throughput hint only on it.
    """
    def split(instances: int) -> int:
        return max(1, cores // instances)

    configs = [ServingConfig(1, cores)]
    if batchable:
        configs.append(ServingConfig(1, cores, max_batch=4, max_wait_ms=2.0))
    configs.append(ServingConfig(2, split(2)))
    if batchable:
        configs += [ServingConfig(1, cores, max_batch=8, max_wait_ms=2.0),
                    ServingConfig(2, split(2), max_batch=8, max_wait_ms=2.0)]
    if cores > 1:
        configs.append(ServingConfig(1, 1))
    configs.append(ServingConfig(4, split(4)))
    if runtime == "openvino":  # an instance runs one call at a time, so one stream each: streams = instances
        configs += [ServingConfig(2, split(2), hint="THROUGHPUT", streams=1),
                    ServingConfig(4, split(4), hint="THROUGHPUT", streams=1)]
    if batchable:
        configs.append(ServingConfig(1, cores, max_batch=16, max_wait_ms=5.0))
    return configs


def rps_at_slo(steps: list[ServingStep], slo_p99_ms: float) -> float | None:
    """The highest throughput of a step with no failures whose p99 held the SLO."""
    held = [s.throughput_rps for s in steps if held_slo(s, slo_p99_ms)]
    return max(held, default=None)


def held_slo(step: ServingStep, slo_p99_ms: float) -> bool:
    return step.failures == 0 and step.p99_ms is not None and step.p99_ms <= slo_p99_ms


def why_stop(steps: list[ServingStep], best_rps: float | None, slo_p99_ms: float) -> tuple[str, str] | None:
    """(outcome, reason) where the configuration should not take another step, after its last one; else None."""
    step, before = steps[-1], rps_at_slo(steps[:-1], slo_p99_ms)
    beaten = best_rps is not None and (before or 0.0) <= best_rps
    if step.failures or step.p99_ms is None:
        return "peak", f"{step.failures} failed requests at {step.users} users"
    if step.p99_ms > slo_p99_ms:
        if beaten and step.throughput_rps <= best_rps:
            return "cut", (f"cannot beat the best: p99 {step.p99_ms:.1f} ms passed the {slo_p99_ms:g} ms SLO at "
                           f"{step.throughput_rps:.0f} req/s, no more than the best's {best_rps:.0f}")
        return "peak", f"p99 {step.p99_ms:.1f} ms passed the {slo_p99_ms:g} ms SLO at {step.users} users"
    if len(steps) > 1 and step.throughput_rps < FLAT_GAIN * steps[-2].throughput_rps:
        now = rps_at_slo(steps, slo_p99_ms) or 0.0
        flat = f"throughput flat at {step.throughput_rps:.0f} req/s from {steps[-2].users} to {step.users} users"
        if best_rps is not None and now <= best_rps:
            return "cut", f"cannot beat the best: {flat}, below the best's {best_rps:.0f}"
        return "peak", f"saturated: {flat}"
    return None


def knee_between(steps: list[ServingStep], slo_p99_ms: float) -> int | None:
    """The users halfway (geometrically) between a last step that passed the SLO and the one before that held it,
    where they are more than twice apart: one more step there finds the knee closer than quadrupling does."""
    if len(steps) < 2 or steps[-1].failures or held_slo(steps[-1], slo_p99_ms) or not held_slo(steps[-2], slo_p99_ms):
        return None
    low, high = steps[-2].users, steps[-1].users
    return round(math.sqrt(low * high)) if high > 2 * low else None


def run_trial(config: ServingConfig, trial: Trial, best_rps: float | None, slo_p99_ms: float,
              left_s: Callable[[], float], step_s: float, users: tuple[int, ...] = USERS) -> ServingTrial:
    """One configuration's steps, up to the first that stops it (or the budget, or its last level)."""
    out = ServingTrial(config.label, config.to_dict())
    if left_s() < 2 * step_s:
        out.stopped = "not tried: the serving search's time budget was spent"
        return out
    try:
        with trial(config) as step:
            for level in users:
                if left_s() < step_s:
                    out.outcome, out.stopped = "budget", f"time budget spent before {level} users"
                    break
                out.steps.append(step(level))
                stop = why_stop(out.steps, best_rps, slo_p99_ms)
                if stop:
                    out.outcome, out.stopped = stop
                    break
            else:
                out.outcome, out.stopped = "peak", f"held the SLO up to {users[-1]} users (a lower bound)"
            knee = knee_between(out.steps, slo_p99_ms) if out.outcome == "peak" else None
            if knee is not None and left_s() >= step_s:
                out.steps = sorted([*out.steps, step(knee)], key=lambda s: s.users)
                out.stopped += f"; then {knee} users, between the last two"
    except (RuntimeError, OSError, ValueError) as exc:  # StartError, LoadError: this one fails, the search goes on
        out.outcome, out.stopped = "error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    out.rps_at_slo = rps_at_slo(out.steps, slo_p99_ms)
    return out


def search(configs: list[ServingConfig], trial: Trial, slo_p99_ms: float, left_s: Callable[[], float],
           step_s: float, say: Say = lambda _: None, users: tuple[int, ...] = USERS) -> list[ServingTrial]:
    """Every configuration tried in order, each bounded by the best so far; the first is the reference."""
    trials: list[ServingTrial] = []
    best: float | None = None
    for config in configs:
        done = run_trial(config, trial, best, slo_p99_ms, left_s, step_s, users)
        trials.append(done)
        if done.outcome != "untried":
            figure = "-" if done.rps_at_slo is None else f"{done.rps_at_slo:.0f} req/s"
            say(f"    {done.label}: {figure} at the SLO; {done.stopped}")
        if done.rps_at_slo is not None and (best is None or done.rps_at_slo > best):
            best = done.rps_at_slo
    return trials


def best_trial(trials: list[ServingTrial]) -> ServingTrial | None:
    """The trial with the highest throughput at the SLO; the earliest (the cheaper) of equals."""
    held = [t for t in trials if t.rps_at_slo is not None]
    return max(held, key=lambda t: t.rps_at_slo, default=None)

