"""The load stage, for `mcbench run` and `mcbench load` alike: step rules and capacity from a LoadPlan and a
hardware profile, the two sweeps against an endpoint, and (for a run) serving a variant to sweep.

In a run (`load_candidates`) the stage load-tests the frontier, fastest first, and the baseline (every measured
candidate when the run does not search); the first always, later ones only while they fit the time budget.
A server or Locust that fails becomes the variant's recorded error, never a hang.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mcbench.base.text import first_line
from mcbench.bench.load import Endpoint, LoadError, Requests, run_load
from mcbench.config import LoadPlan
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.hardware import split_cores, usable_cores
from mcbench.optimizer.profiles import Profile
from mcbench.optimizer.targets import Target
from mcbench.reports.capacity import capacity
from mcbench.reports.quality import quality_metric
from mcbench.reports.schema import Capacity, LoadResult, VariantResult
from mcbench.run_state import Candidate, RunState, going, save
from mcbench.search import beats, frontier, point_of, points, record
from mcbench.workload import Workload

Say = Callable[[str], None]


def budget_of(plan: LoadPlan, profile: Profile | None) -> float:
    """The p99 budget capacity is counted under: the profile's where it gives one, else the plan's."""
    return profile.latency_budget_ms if profile and profile.latency_budget_ms else plan.budget_p99_ms


def step_rules(plan: LoadPlan, budget_p99_ms: float, check_answers: bool = True) -> LoadPlan:
    """The plan the sweeps run by: its budget the one capacity is counted under, no check without offline outputs."""
    return replace(plan, budget_p99_ms=budget_p99_ms, check_every=plan.check_every if check_answers else 0)


def capacity_of(load: LoadResult, plan: LoadPlan, profile: Profile | None) -> Capacity:
    """Max req/s under the budget, replicas for the target and cost: the profile's figures over the plan's."""
    target_rps = profile.target_rps if profile and profile.target_rps else plan.target_rps
    cost = profile.cost_per_hour if profile and profile.cost_per_hour is not None else plan.cost_per_hour
    return capacity(load, budget_of(plan, profile), target_rps, cost)


def load_cores(profile: Profile | None) -> tuple[list[int], list[int]]:
    """The profile's server and load-generator cores where this machine has them all; else half and half."""
    here = set(usable_cores())
    if profile and profile.server_cores and profile.loadgen_cores:
        if set(profile.server_cores) | set(profile.loadgen_cores) <= here:
            return list(profile.server_cores), list(profile.loadgen_cores)
    return split_cores(sorted(here))


def plan_text(plan: LoadPlan, budget_p99_ms: float) -> str:
    return (f"closed loop {'-'.join(map(str, plan.users))} users, then open loop; {plan.step_seconds:g} s a step, "
            f"p99 budget {budget_p99_ms:g} ms")


@dataclass
class VariantLoad:
    """A variant's load test: the sweeps (None where they failed), capacity, the server's settings, warnings."""

    load: LoadResult | None
    capacity: Capacity | None
    server: dict
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def load_test_variant(name: str, artifact: Artifact, target: Target, requests: Requests, plan: LoadPlan,
                      profile: Profile | None, work: Path, say: Say) -> VariantLoad:
    """Serve the variant in its own process on the server cores; drive it with Locust on the others.

    Both sweeps run; with `max_batch` > 1 they run again against a server that batches, to compare.
    """
    server_cores, loadgen_cores = load_cores(profile)
    target = target.with_threads(len(server_cores))
    out = VariantLoad(None, None, {**target.to_dict(), "cores": server_cores})
    work.mkdir(parents=True, exist_ok=True)
    spec_path = work / "server.json"
    spec_path.write_text(json.dumps({"name": name, "artifact": artifact.to_dict(), "target": target.to_dict()}))
    budget = budget_of(plan, profile)
    rules = step_rules(plan, budget)
    say(f"  load test: {plan_text(plan, budget)} ...")

    def sweeps(folder: Path, flags: list[str]) -> LoadResult:
        from mcbench.bench.launcher import serve_in_subprocess

        with serve_in_subprocess(spec_path, server_cores, extra=flags) as server:
            load = run_load(Endpoint(server.url, name), requests, list(plan.users), plan.open_rates, rules,
                            loadgen_cores=loadgen_cores, server_cores=server_cores,
                            server_threads=target.threads or 1, work_dir=folder / "load",
                            workers=plan.locust_workers, say=say)
        load.server_dispatch, load.server_model_ms = server.dispatch, server.model_ms
        return load

    try:
        out.load = sweeps(work, [])
    except (LoadError, RuntimeError, OSError) as exc:
        out.error = f"load test: {type(exc).__name__}: {exc}"
        say(f"  failed: {out.error}")
        return out
    if plan.max_batch > 1:
        flags = ["--max-batch", str(plan.max_batch), "--max-wait-ms", str(plan.max_wait_ms)]
        say(f"  again with dynamic batching (max batch {plan.max_batch}, {plan.max_wait_ms:g} ms) ...")
        try:
            batched = sweeps(work / "batched", flags)
            out.load.batching = {"max_batch": plan.max_batch, "max_wait_ms": plan.max_wait_ms}
            out.load.batched_steps, out.load.batched_open_steps = batched.steps, batched.open_steps
        except (LoadError, RuntimeError, OSError) as exc:  # the unbatched figures stand; say why no comparison
            first = first_line(exc, 300)
            out.warnings.append(f"dynamic batching not compared: {first}")
            say(f"  dynamic batching not compared: {first}")
    out.capacity = capacity_of(out.load, plan, profile)
    out.warnings += load_warnings(out.load)
    steps = out.load.steps + out.load.open_steps
    peak = max(steps, key=lambda s: s.throughput_rps)
    held = out.capacity.max_rps_under_budget
    say(f"  peak {peak.throughput_rps:.0f} req/s, {sum(s.failures for s in steps)} failures; under {budget:g} ms "
        f"p99: {'no step held it' if held is None else f'{held:.0f} req/s'}")
    return out


def load_warnings(load: LoadResult) -> list[str]:
    """What a reader of the load figures must know: shared cores, a busy generator, wrong answers, unsettled steps."""
    out = []
    steps = load.steps + load.open_steps
    if load.cores_shared:
        out.append("server and load generator shared CPU cores: HTTP figures are pessimistic")
    saturated = [s for s in steps if s.loadgen_saturated]
    if saturated:
        out.append(f"load generator above 90% CPU in {len(saturated)} step(s): "
                   "it may be the bottleneck, not the server")
    if load.mismatches:
        out.append(f"{load.mismatches} of {load.checked} checked answers differed from the variant's offline outputs")
    unstable = [s for s in steps if s.stable is False]
    if unstable:
        out.append(f"{len(unstable)} of {len(steps)} load steps did not settle "
                   "(windows disagreed beyond the tolerance)")
    return out


# ---------------------------------------------------------------- the stage in a run

def load_candidates(state: RunState) -> None:
    """The load test of each candidate the search load-tests (`load_order`), saving after each; a candidate left out
    has its record say why (off the frontier, no time left, batches above one)."""
    estimate = load_seconds_estimate(state.config.load)
    candidates, budget = load_order(state), state.budget
    for index, v in enumerate(candidates, start=1):
        candidate = state.candidates[v.name]
        if index > 1 and budget.left() < estimate:
            record(v, v.search["stage"], f"not load-tested: {budget.text()} had {max(budget.left(), 0):.0f} s "
                                         f"left, a load test takes about {estimate:.0f} s")
            continue
        if candidate.spec.batch_size > 1:
            v.warnings.append(f"in-process figures are for batches of {candidate.spec.batch_size}; "
                              "the HTTP load test runs at batch 1 and is kept to the batch-1 variant")
            record(v, v.search["stage"], f"not load-tested: it runs batches of {candidate.spec.batch_size}")
            continue
        state.on_stage("load", index, len(candidates), v.name, budget)
        load_test(state, candidate, v)
        record(v, "load", None if v.status == "ok" else first_line(v.error or "failed"))
        save(state)


def load_order(state: RunState) -> list[VariantResult]:
    """The candidates to load-test, in order: the frontier's fastest, the baseline, the rest of the frontier; every
    measured candidate when the run does not search. Those left off the frontier have it on record."""
    run = state.run
    candidates = [v for v in going(state) if v.name in state.candidates]
    if not state.config.searches:
        return candidates
    metric = quality_metric(run)
    names_going = {v.name for v in candidates}  # a candidate the search stopped is no frontier for the rest: its
    # short screening p50 could otherwise beat a rival's full one and leave nothing load-tested
    front = frontier([p for p in points(run, metric) if p.name in names_going])
    names = [p.name for p in front[:1]] + [run.baseline] + [p.name for p in front[1:]]  # the answer first
    for v in candidates:
        if v.name not in names:
            by = next((p for p in front if beats(p, point_of(run, v, metric))), None)
            record(v, v.search["stage"], "not load-tested: not on the frontier" +
                   (f" ({by.name} is as fast or faster at no lower quality)" if by else ""))
    return sorted((v for v in candidates if v.name in names), key=lambda v: names.index(v.name))


def load_test(state: RunState, candidate: Candidate, result: VariantResult) -> None:
    """The load test of one variant of the run (`load_test_variant`); a failure becomes the variant's error."""
    spec, plan = candidate.spec, state.config.load
    profile = state.plan.profiles.get(spec.profile or "")
    requests = load_requests(state.workload, candidate.every_output, answers=plan.answers,
                             batch_axes=candidate.batch_axes)
    tested = load_test_variant(spec.name, candidate.artifact, spec.target, requests, plan, profile,
                               state.paths.work(spec.name), state.say)
    result.settings["server"] = tested.server
    result.warnings += tested.warnings
    if tested.error is not None:
        result.status, result.error = "failed", tested.error
        return
    result.load, result.capacity = tested.load, tested.capacity


def load_seconds_estimate(plan: LoadPlan) -> float:
    """About how long one variant's load test takes: every step at its base length, plus start-up."""
    steps = len(plan.users) + max(len(plan.rates), len(plan.rate_fractions))
    return (steps * (plan.step_seconds + 1.5) + 5.0) * (2 if plan.max_batch > 1 else 1)


def load_requests(workload: Workload, outputs: list | None, count: int = 8, answers: str = "binary",
                  batch_axes: list[int | None] | None = None) -> Requests:
    """A few evaluation inputs to send in turn, with the variant's offline outputs for each, every one, to check the
    answers against (each output's rows, kept batch first, moved back to its own batch axis in the model's layout);
    `answers` the form the answers are asked in (binary data or JSON)."""
    samples = workload.eval_samples[:count] or [workload.timing_feeds]
    expected = None
    if outputs and len(workload.eval_samples):
        axes = batch_axes or [0] * len(outputs)
        per_output = [request_rows(o, len(workload.eval_samples), len(samples), axis)
                      for o, axis in zip(outputs, axes, strict=True)]
        expected = [list(answer) for answer in zip(*per_output, strict=True)]
    return Requests.encode(samples, expected, answers)


def request_rows(output, samples: int, requests: int, batch_axis: int | None) -> list[np.ndarray]:
    """One output's rows for each of the first `requests` of `samples` evaluation samples (the output kept batch
    first), each in the model's layout: its batch axis put back, or (None: the output has none) the added one
    taken off."""
    rows = len(output) // samples
    each = [np.asarray(output[i * rows:(i + 1) * rows]) for i in range(requests)]
    return [r[0] if batch_axis is None else np.moveaxis(r, 0, batch_axis) for r in each]
