"""The screen stage, the search's first: each candidate built, its outputs and quality measured on the evaluation
data and its latency timed briefly, in a child process; then the quality step, where a candidate over the quality
budget goes no further.

Candidates are screened in the plan's order (lossless ones first: optimizer.recipes.search_space); the baseline
always, the others while the run has used under half its time budget and their price fits
(mcbench.search.not_started). Any exception of a candidate's build, session or measurement fails that variant,
never the run. The baseline's outputs are kept (state.reference, and a file for --resume): fidelity is measured
against them.
"""

from __future__ import annotations

import time

import numpy as np

from mcbench.base.files import FileError, write_atomic
from mcbench.base.text import first_line
from mcbench.bench.accuracy import accuracy_of
from mcbench.bench.datasets import check_class_labels
from mcbench.bench.isolate import ChildError, call_in_child, error_text
from mcbench.bench.latency import QUICK_PLAN, TimingPlan
from mcbench.bench.measure import InProcessResult, measure_in_process
from mcbench.bench.metrics import resolved_task
from mcbench.bench.roles import OutputRole, output_roles
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.hardware import usable_cores
from mcbench.optimizer.recipes import VariantSpec, keeps_fp32, pass_name
from mcbench.optimizer.targets import Target, why_not_here
from mcbench.reports.quality import over_budget_text, quality_metric, within_budget
from mcbench.reports.schema import VariantResult
from mcbench.run_state import Candidate, RunPaths, RunState, going, save
from mcbench.runguard import OutputError, ResultsWriteError
from mcbench.search import not_started, record
from mcbench.workload import Workload

MEASURE_TIMEOUT_S = 900.0


def screening_plan(full: TimingPlan) -> TimingPlan:
    """The first, short look at a candidate: enough for its median's interval, never longer than the full plan."""
    return TimingPlan(warmup_runs=min(full.warmup_runs, QUICK_PLAN.warmup_runs),
                      min_runs=min(full.min_runs, QUICK_PLAN.min_runs),
                      min_seconds=min(full.min_seconds, QUICK_PLAN.min_seconds),
                      max_seconds=min(full.max_seconds, QUICK_PLAN.max_seconds),
                      settle_tolerance=max(full.settle_tolerance, QUICK_PLAN.settle_tolerance))


def screen(state: RunState) -> None:
    """Every candidate in turn: kept from an earlier run, not tried (by its price), or built and measured (the full
    timing when the run does not search); results.json is saved after each."""
    run, specs, searching = state.run, state.plan.specs, state.config.searches
    plan = screening_plan(state.config.timing) if searching else state.config.timing
    lossless_untried: str | None = None  # the first candidate that keeps FP32 numerics the budget left untried
    for index, spec in enumerate(specs, start=1):
        if spec.name in state.kept:
            state.say(f"[{index}/{len(specs)}] {spec.name}: kept ({state.kept[spec.name].status}) from before")
            run.variants.append(state.kept[spec.name])
            continue
        reason = None if spec.baseline else why_not_now(state, spec, lossless_untried)
        if reason is not None:
            lossless_untried = lossless_untried or (spec.name if keeps_fp32(spec) else None)
            run.variants.append(not_tried(spec, reason))
            state.say(f"[{index}/{len(specs)}] {spec.name}: {reason}")
            continue
        state.on_stage("screen", index, len(specs), spec.name, state.budget)
        result, measured = priced_run(state, spec, plan)
        if spec.baseline:
            state.budget.restart()  # the baseline is measured whatever the budget: the search's time starts now
            if measured is not None:
                take_baseline(state, result, measured)
        if result.status == "ok":
            record(result, "screen" if searching else "time")
        else:
            record(result, "screen", f"{result.status}: {first_line(result.error or '')}")
        run.variants.append(result)
        save(state)


def not_tried(spec: VariantSpec, reason: str) -> VariantResult:
    result = VariantResult(spec.name, spec.target.runtime, list(spec.recipe), status="skipped", error=reason,
                           profile=spec.profile, settings={"why": spec.why} if spec.why else {})
    record(result, "plan", reason)
    return result


def why_not_now(state: RunState, spec: VariantSpec, lossless_untried: str | None) -> str | None:
    """Why the search does not screen `spec` now (None: it does), by its price (mcbench.search.not_started)."""
    price = state.prices.of(state.builder.pending(spec.recipe))
    return not_started(state.budget, price, None if keeps_fp32(spec) else lossless_untried)


def priced_run(state: RunState, spec: VariantSpec, plan: TimingPlan) -> tuple[VariantResult, InProcessResult | None]:
    """run_variant, with what its builds and its screening took noted for the prices of the candidates after it."""
    builder = state.builder
    before, started = set(builder.seconds), time.monotonic()
    result, measured = run_variant(state, spec, plan)
    built = {pass_name(p[-1]): s for p, s in builder.seconds.items() if p not in before}
    state.prices.saw(built, time.monotonic() - started - sum(built.values()))
    return result, measured


def take_baseline(state: RunState, result: VariantResult, measured: InProcessResult) -> None:
    """The baseline's outputs become the reference (and a file, for --resume); its own quality is measured on them."""
    ref = state.reference
    ref.outputs, ref.more = measured.outputs, measured.more_outputs
    ref.roles = inferred_roles(state, measured)
    result.accuracy = accuracy(state, result, measured.outputs, measured.outputs, measured.more_outputs)
    save_baseline_outputs([measured.outputs, *(measured.more_outputs or [])], state.paths)


def run_variant(state: RunState, spec: VariantSpec, plan: TimingPlan) -> tuple[VariantResult, InProcessResult | None]:
    """Build the variant, then measure its outputs, quality and latency in a child process."""
    say, workload = state.say, state.workload
    result = VariantResult(spec.name, spec.target.runtime, list(spec.recipe), status="failed",
                           profile=spec.profile, settings={"why": spec.why} if spec.why else {})
    try:
        artifact = state.builder.build(spec.recipe)
        result.artifact = state.builder.manifest(artifact)
        result.passes = [dict(r) for r in artifact.passes]
        target = spec.target if spec.target.threads else spec.target.with_threads(len(usable_cores()))
        result.settings.update({"in_process": target.to_dict(), "batch_size": spec.batch_size})
        reason = spec.skip or why_not_here(target, artifact, spec.batch_size)
        if reason:
            result.status, result.error = "skipped", reason
            say(f"  compiled, not measured: {reason}")
            return result, None
        say(f"  measuring accuracy on {len(workload.eval_samples)} samples and in-process latency ...")
        measured = measure(spec, artifact, target, workload, plan)
    except ChildError as exc:
        result.error = error_text(exc)
        result.exit_status, result.stderr_tail = exc.exit_status, exc.stderr_tail or None
        say(f"  failed: {first_line(result.error)}")
        return result, None
    except OutputError:
        raise
    except Exception as exc:  # a pass or runtime that fails (OpenVINO cannot read the graph ...) fails this one
        result.error = f"{type(exc).__name__}: {exc}"
        say(f"  failed: {first_line(result.error)}")
        return result, None
    result.latency, result.op_profile = measured.latency, measured.op_profile
    if not measured.settled and plan == state.config.timing:
        result.warnings.append(f"in-process median did not settle within {plan.max_seconds:.0f} s "
                               f"(CV {measured.latency.cv:.0%}): the machine is noisy")
    if not spec.baseline:
        try:
            result.accuracy = accuracy(state, result, measured.outputs, state.reference.outputs,
                                       measured.more_outputs)
        except Exception as exc:  # outputs its quality cannot be judged on fail this candidate, not the run
            result.error = f"its quality could not be measured: {type(exc).__name__}: {exc}"
            say(f"  failed: {first_line(result.error)}")
            return result, None
    result.status = "ok"
    state.candidates[spec.name] = Candidate(spec, artifact, measured.outputs, measured.more_outputs,
                                            measured.batch_axes)
    latency = measured.latency
    say(f"  in-process p50 {latency.p50_ms:.3f} ms, p99 {latency.p99_ms:.3f} ms (n={latency.count})")
    return result, measured


def measure(spec: VariantSpec, artifact: Artifact, target: Target, workload: Workload,
            plan: TimingPlan) -> InProcessResult:
    """The variant's outputs on the evaluation samples and its in-process latency, in a child process."""
    return call_in_child(measure_in_process, artifact.to_dict(), target.to_dict(), workload.eval_samples,
                         workload.timing_feeds, plan, spec.batch_size, timeout_s=MEASURE_TIMEOUT_S)


def inferred_roles(state: RunState, measured: InProcessResult) -> list[OutputRole]:
    """Each output's role, inferred on the baseline's outputs or declared with --output, said on the terminal."""
    outputs = [measured.outputs, *(measured.more_outputs or [])]
    axes = measured.batch_axes or [0] * len(outputs)
    roles = output_roles(list(measured.output_names), outputs, state.config.outputs, axes)
    for role in roles:
        state.say(role.line())
    return roles


def accuracy(state: RunState, result: VariantResult, outputs, baseline, more=None):
    """Task metrics and fidelity; a user metric that raises becomes a warning, not a lost variant."""
    config, workload, ref = state.config, state.workload, state.reference
    if state.task is None:  # `auto` is decided once, on the first outputs measured (the baseline's)
        state.task = resolved_task(config.task, [outputs, *(more or [])])
    if state.task == "classification":
        check_class_labels(config.dataset or config.labels_file, workload.labels, outputs)
    task, also = state.task, {"more": more, "baseline_more": ref.more, "roles": ref.roles}
    try:
        return accuracy_of(outputs, baseline, workload.labels, workload.dataset, task, state.user_metric, **also)
    except Exception as exc:
        if state.user_metric is None:
            raise
        result.warnings.append(f"--metric {config.metric} failed: {type(exc).__name__}: {exc}")
        return accuracy_of(outputs, baseline, workload.labels, workload.dataset, task, **also)


def save_baseline_outputs(outputs: list, paths: RunPaths) -> None:
    """Every output of the baseline, "0", "1", ... in the model's order, in one .npz replaced whole (--resume)."""
    arrays = {str(i): np.asarray(o) for i, o in enumerate(outputs)}
    try:
        write_atomic(paths.baseline_outputs, lambda f: np.savez(f, **arrays))
    except FileError as exc:  # the path is something other than a regular file; the message names it
        raise ResultsWriteError(str(exc)) from None
    except OSError as exc:
        raise ResultsWriteError(f"cannot write {paths.baseline_outputs}: {exc.strerror or exc}") from None


def drop_over_budget(state: RunState) -> None:
    """The quality step: a candidate over the quality budget goes no further; the figure says by how much."""
    run = state.run
    metric = quality_metric(run)
    for v in going(state):
        if within_budget(run, v, metric) is False:
            record(v, v.search["stage"], f"over the quality budget: {over_budget_text(run, v, metric)}")
            state.say(f"  {v.name}: stops here, over the quality budget ({over_budget_text(run, v, metric)})")
