"""The serving stage of `mcbench run`: the serving search (mcbench.serving_search) for the finalists, measured for real.

Each configuration is served by the built-in server in its own process on the server cores (the spec's target
carries its threads and runtime settings, the flags its instances and batching) and driven by Locust on the others,
a closed-loop step at a time, as the load stage does. The figures are closed-loop ones: the knee of each
configuration, compared on equal terms; the load stage's open-loop capacity stays the variant's own figure.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from mcbench.bench.load import Endpoint, Generator, Requests, measure_step
from mcbench.bench.serving import ServingConfig
from mcbench.config import LoadPlan
from mcbench.load_stage import budget_of, load_cores, load_requests
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.profiles import Profile
from mcbench.optimizer.targets import Target
from mcbench.reports.schema import ServingSearch, ServingStep
from mcbench.run_state import RunState, save
from mcbench.serving_search import best_trial, configs_to_try, search

Say = Callable[[str], None]
STEP_SECONDS = 2.5  # a search step: shorter than a load-stage step, as the configurations are compared, not sized
STEP_OVERHEAD_S = 2.5  # starting Locust and its grace period, a step
MIN_SERVING_S = 15.0  # a finalist gets no serving search with less left than this: not even two configurations


def slo_of(plan: LoadPlan, profile: Profile | None) -> float:
    """The serving search's SLO: --slo-p99-ms, else the p99 budget capacity is counted under."""
    return plan.slo_p99_ms or budget_of(plan, profile)


def search_rules(plan: LoadPlan) -> LoadPlan:
    """The plan a search step runs by: STEP_SECONDS at most, never extended, no answer checked."""
    seconds = min(plan.step_seconds, STEP_SECONDS)
    return replace(plan, step_seconds=seconds, warmup_s=min(plan.warmup_s, seconds / 4), max_step_seconds=seconds,
                   check_every=0)


def batchable(artifact: Artifact) -> bool:
    """Whether the server can join requests: an input has a batch axis (the server joins each input along its own,
    and requests only with equal values of the inputs without one), and none fixes it at a number. The outputs'
    axes the server finds at start, on a batch of two; where none holds the batch, it refuses to start."""
    if all(s.batch_axis is None for s in artifact.inputs):
        return False
    if artifact.format != "onnx":
        return True  # a torch module: the server tries a batch of two at start and refuses if it fails
    from mcbench.optimizer.graph_stats import fixed_batch_inputs

    return not fixed_batch_inputs(artifact.path, {s.name: s.batch_axis for s in artifact.inputs})


@contextlib.contextmanager
def served(config: ServingConfig, spec: dict, folder: Path, requests: Requests, rules: LoadPlan,
           cores: tuple[list[int], list[int]], workers: int) -> Iterator[Callable[[int], ServingStep]]:
    """Serve `config` and yield a function that measures one closed-loop step at a number of users."""
    from mcbench.bench.launcher import serve_in_subprocess

    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "server.json"
    spec_path.write_text(json.dumps({**spec, "target": config.target_dict(spec["target"])}))
    server_cores, loadgen_cores = cores
    with serve_in_subprocess(spec_path, server_cores, extra=config.server_flags()) as server:
        settings = replace(requests.write(folder / "requests"), check_every=0)
        gen = Generator(loadgen_cores, workers, folder)
        endpoint = Endpoint(server.url, spec["name"])

        def step(users: int) -> ServingStep:
            s = measure_step(gen, endpoint, settings, "closed", float(users), rules, f"closed_{users}")
            return ServingStep(users, round(s.throughput_rps, 2), s.latency.p50_ms if s.latency else None,
                               s.latency.p99_ms if s.latency else None, s.failures, s.stable)

        yield step


def serving_search(name: str, artifact: Artifact, target: Target, requests: Requests, plan: LoadPlan,
                   profile: Profile | None, work: Path, budget_s: float, say: Say) -> ServingSearch:
    """Every configuration tried within `budget_s`, the best, and the replicas and cost of the target load."""
    started, slo, rules = time.monotonic(), slo_of(plan, profile), search_rules(plan)
    server_cores, loadgen_cores = load_cores(profile)
    configs = configs_to_try(len(server_cores), batchable(artifact), target.runtime)
    spec = {"name": name, "artifact": artifact.to_dict(), "target": target.to_dict()}
    say(f"  serving search: {len(configs)} configurations, p99 SLO {slo:g} ms, {budget_s:.0f} s ...")

    def trial(config: ServingConfig):
        folder = work / "serving" / "".join(c if c.isalnum() else "_" for c in config.label)
        return served(config, spec, folder, requests, rules, (server_cores, loadgen_cores), plan.locust_workers)

    def left_s() -> float:
        return budget_s - (time.monotonic() - started)

    trials = search(configs, trial, slo, left_s, rules.run_seconds + STEP_OVERHEAD_S, say)
    out = ServingSearch(slo, trials, default_rps=trials[0].rps_at_slo, budget_s=budget_s)
    best = best_trial(trials)
    if best is not None:
        out.best, out.best_config, out.best_rps = best.label, best.config, best.rps_at_slo
        priced(out, plan, profile)
    out.elapsed_s = round(time.monotonic() - started, 1)
    return out


def priced(out: ServingSearch, plan: LoadPlan, profile: Profile | None) -> None:
    """Replicas of the best configuration for the target load, and their cost, where the plan or profile gives them."""
    out.target_rps = profile.target_rps if profile and profile.target_rps else plan.target_rps
    cost = profile.cost_per_hour if profile and profile.cost_per_hour is not None else plan.cost_per_hour
    if out.best_rps is None or out.best_rps <= 0:
        return
    if out.target_rps:
        out.replicas = math.ceil(out.target_rps / out.best_rps)
    if cost is not None:
        out.cost_per_million = cost / (out.best_rps * 3600) * 1e6
        out.cost_per_hour = out.replicas * cost if out.replicas is not None else None


def serving_finalists(run, measured: set[str], most: int = 3) -> list[str]:
    """The variants the serving search is for: each profile's recommendation, then the rest of its frontier within
    the quality budget, best first; only those load-tested in this run, at most `most`."""
    from mcbench.reports.decision import decide, profile_names

    decisions = [decide(run, p) for p in profile_names(run)]
    names = [d.chosen.name for d in decisions if d.kind == "ship" and d.chosen is not None]
    names += [v.name for d in decisions for v in d.frontier]
    ready = [n for n in dict.fromkeys(names) if n in measured and run.variant(n).load is not None]
    return ready[:most]


def serve_finalists(state: RunState) -> None:
    """The serve stage: the serving search for the recommendation, then up to two more frontier variants
    (`serving_finalists`), each taking what is left of the serving budget; results.json saved after each."""
    run, plan, started = state.run, state.config.load, time.monotonic()
    finalists = serving_finalists(run, set(state.candidates))
    for index, name in enumerate(finalists, start=1):
        left = plan.serving_budget_s - (time.monotonic() - started)
        if left < MIN_SERVING_S:
            run.warnings.append(f"serving search not run for {', '.join(finalists[index - 1:])}: the "
                                f"{plan.serving_budget_s:g} s serving budget was spent")
            break
        candidate = state.candidates[name]
        spec = candidate.spec
        state.say(f"[serving {index}/{len(finalists)}] {name}")
        requests = load_requests(state.workload, candidate.every_output, answers=plan.answers,
                                 batch_axes=candidate.batch_axes)
        run.variant(name).serving = serving_search(name, candidate.artifact, spec.target, requests, plan,
                                                   state.plan.profiles.get(spec.profile or ""),
                                                   state.paths.work(spec.name), left, state.say)
        save(state)
