"""Capacity from a load sweep: the highest throughput that holds a p99 budget, replicas and cost.

Standard library only and reads only the results schema, like the rest of `reports`.
"""

from __future__ import annotations

import math

from mcbench.reports.schema import Capacity, LoadResult, LoadStep


def holds_budget(step: LoadStep, budget_p99_ms: float) -> bool:
    """A step counts only if every request succeeded and its p99 is within the budget."""
    return step.failures == 0 and step.latency is not None and step.latency.p99_ms <= budget_p99_ms


def best_under_budget(steps: list[LoadStep], budget_p99_ms: float) -> LoadStep | None:
    held = [s for s in steps if holds_budget(s, budget_p99_ms)]
    return max(held, key=lambda s: s.throughput_rps, default=None)


def capacity(load: LoadResult, budget_p99_ms: float, target_rps: float | None = None,
             cost_per_hour: float | None = None) -> Capacity:
    """Replicas and cost to serve `target_rps` under the budget, from the open-loop sweep where it has an answer.

    The open loop decides where it ran: its latencies include queueing at the offered rate, which is
    how a fleet sees traffic; the closed loop's never exceed what its few users allow, so where the
    open loop held the budget at no rate, there is no figure (never the closed loop's, which would
    overstate it). The closed loop is used only where no open-loop sweep ran. A figure from a step
    that did not settle is labelled so in `basis`. Replicas assume requests spread evenly; cost per
    million requests is one replica's cost per hour over what it serves in an hour at full capacity.
    Where every step of the sweep held the budget, the sweep never found the limit, and the figure
    is marked a lower bound.
    """
    if budget_p99_ms <= 0:
        raise ValueError(f"a p99 budget must be positive, got {budget_p99_ms}")
    if load.open_steps:
        best, basis = best_under_budget(load.open_steps, budget_p99_ms), "open-loop"
        if best is None:  # the closed loop's figure would overstate it: its users never send a burst
            lowest = min(s.offered_rps or s.throughput_rps for s in load.open_steps)
            return Capacity(budget_p99_ms, None, f"none: the open loop's lowest rate, {lowest:,.0f} req/s offered, "
                            "already failed the budget or had errors; capacity is below it", target_rps)
    else:
        best, basis = best_under_budget(load.steps, budget_p99_ms), "closed-loop (no open-loop sweep ran)"
    if best is None:
        return Capacity(budget_p99_ms, None, "none: no step held the budget", target_rps)
    sweep = load.open_steps if basis == "open-loop" else load.steps
    if all(holds_budget(s, budget_p99_ms) for s in sweep):
        basis += " (lower bound: no step of the sweep passed the budget)"
    if best.stable is False:
        basis += " (unstable step)"
    rps = best.throughput_rps
    replicas = math.ceil(target_rps / rps) if target_rps and rps > 0 else None
    per_hour = replicas * cost_per_hour if replicas is not None and cost_per_hour is not None else None
    per_million = cost_per_hour / (rps * 3600) * 1e6 if cost_per_hour is not None and rps > 0 else None
    return Capacity(budget_p99_ms, rps, basis, target_rps, replicas, per_hour, per_million)
