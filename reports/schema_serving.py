"""The serving search's records in results.json: each configuration tried, its steps, the best and its cost.

Part of the results schema (`reports.schema` re-exports them; `schema_json` reaches them from `RunResult`);
standard library only. `mcbench.serving_search` decides what fills them, `reports.serving_view` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServingStep:
    """One closed-loop step against one serving configuration."""

    users: int
    throughput_rps: float
    p50_ms: float | None
    p99_ms: float | None
    failures: int = 0
    stable: bool | None = None


@dataclass
class ServingTrial:
    """One serving configuration the search tried (mcbench.serving_search): its steps and why it stopped."""

    label: str
    config: dict[str, Any]  # bench.serving.ServingConfig.to_dict()
    steps: list[ServingStep] = field(default_factory=list)
    rps_at_slo: float | None = None  # the highest throughput of a step without failures whose p99 held the SLO
    outcome: str = "untried"  # peak | cut (cannot beat the best) | budget | error | untried
    stopped: str = ""  # why, in words


@dataclass
class ServingSearch:
    """A variant's serving search: every configuration tried, the best, and what it takes to serve the target."""

    slo_p99_ms: float
    trials: list[ServingTrial]
    best: str | None = None  # the best trial's label
    best_config: dict[str, Any] | None = None
    best_rps: float | None = None  # its throughput at the SLO
    default_rps: float | None = None  # the default configuration's (the first trial)
    target_rps: float | None = None
    replicas: int | None = None  # of the best configuration, for target_rps
    cost_per_hour: float | None = None
    cost_per_million: float | None = None
    budget_s: float | None = None
    elapsed_s: float = 0.0


def serving_from_dict(d: dict[str, Any] | None) -> ServingSearch | None:
    if d is None:
        return None
    trials = [ServingTrial(**{**t, "steps": [ServingStep(**s) for s in t["steps"]]}) for t in d["trials"]]
    return ServingSearch(**{**d, "trials": trials})
