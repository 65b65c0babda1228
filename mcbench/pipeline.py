"""The spine of a run: the stages in order, over one RunState (mcbench/run_state.py), and nothing else.

    plan -> prepare -> build + screen -> quality -> time -> load -> confirm -> serve -> save

Each stage is a function of the state in the module that owns it (docs/architecture.md, "The spine"). This module
keeps their order, what --resume keeps of an earlier run, and what an interrupt leaves. One variant's failure is
recorded with its error and the run goes on; results.json is rewritten atomically after every variant, so an
interrupted run keeps what it finished.
"""

from __future__ import annotations

import signal
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mcbench.bench.environment import environment
from mcbench.bench.metrics import AUTO
from mcbench.bench.op_profile import with_comparison
from mcbench.bench.roles import OutputRole
from mcbench.config import RunConfig
from mcbench.confirm import confirm_stage
from mcbench.load_stage import load_candidates
from mcbench.optimizer.build import Builder
from mcbench.plan import Plan, check_data_needs, plan_before_loading, plan_for_model, say_plan, workload_data
from mcbench.prepare_stage import build_data, load_user_metric, prepare
from mcbench.reports.schema import RunResult, VariantResult
from mcbench.run_state import Reference, RunPaths, RunState, Say, StageHook, save
from mcbench.runguard import signal_number, signals_ignored
from mcbench.screen_stage import drop_over_budget, screen
from mcbench.search import STAGES, TimeBudget, summary
from mcbench.serving_stage import serve_finalists
from mcbench.time_stage import time_candidates
from mcbench.workload import Workload, input_warnings


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived mid-run; `run` holds what finished, already saved to `paths.results`."""

    def __init__(self, run: RunResult, paths: RunPaths, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.run, self.paths, self.signum = run, paths, signum


class Pipeline:
    """A run of one RunConfig; `progress` says each step on the terminal, `on_folder` hears of the run folder once it
    exists (the CLI moves its log there), `on_stage` of each candidate a stage starts (the live status line)."""

    def __init__(self, config: RunConfig, progress: Say = print,
                 on_folder: Callable[[Path], object] | None = None, on_stage: StageHook | None = None) -> None:
        self.config, self.say = config, progress
        self.on_folder = on_folder or (lambda folder: None)
        self.on_stage = on_stage or (lambda stage, index, total, name, budget: self.say(f"[{index}/{total}] {name}"))

    def run(self, resume: RunResult | None = None) -> tuple[RunResult, RunPaths]:
        """Plan the candidates, then take them through the stages: screen (build, quality, a short timing),
        time (full timing, for those that can reach the frontier), load (the frontier and the baseline), saving
        after each; with `resume` (an earlier run of this config in config.out_dir), keep its finished variants.

        An explicit variant list (or --exhaustive) takes every candidate through every stage, with no time budget.
        SIGINT/SIGTERM (a KeyboardInterrupt) saves what finished, marks the run interrupted and
        raises RunInterrupted; the children were already killed by bench.isolate on the way up.
        """
        config, say = self.config, self.say
        plan = plan_before_loading(config)  # plan: all that can be checked before the model is loaded
        check_data_needs(plan.specs, workload_data(config))
        user_metric = load_user_metric(config.metric)
        workload, paths = prepare(config, say, self.on_folder)
        plan = plan_for_model(config, plan, workload.base, workload.train is not None)
        say_plan(plan, say)
        state = begin(config, plan, workload, paths, resume, user_metric, say, self.on_stage)
        try:
            screen(state)  # build, outputs and quality, a short timing
            drop_over_budget(state)  # quality
            time_candidates(state)
            if config.load is not None:
                load_candidates(state)
            if state.reference.outputs is not None:
                state.run.search = summary(state.run, config.searches, state.budget)  # the decision reads it
                confirm_stage(state.run, config.quick, say)
                if config.load is not None and config.load.serving_budget_s > 0:
                    serve_finalists(state)
        except KeyboardInterrupt as exc:
            raise interrupted(state, exc) from None
        finish(state)
        return state.run, state.paths


def begin(config: RunConfig, plan: Plan, workload: Workload, paths: RunPaths, resume: RunResult | None,
          user_metric: Callable | None, say: Say, on_stage: StageHook) -> RunState:
    """The run's state once the model is loaded: its results, what it keeps of `resume`, the builder (kept
    variants' artifacts count as built) and the time budget."""
    run = new_result(config, plan, workload, paths)
    kept, cut_short = kept_variants(resume, config, say)
    if resume is not None:
        note_resume(run, resume, paths, len(kept), len([s for s in plan.specs if s.name not in kept]), cut_short)
    task = (None if config.task == AUTO else config.task) or kept_task(kept)  # `auto` resolves on the baseline
    reference = kept_reference(kept, run.baseline, paths)
    builder = Builder(workload.base, build_data(workload, config.task), paths.artifacts, config.cache_dir, say)
    reuse_artifacts(builder, kept)
    budget = TimeBudget(config.time_budget_s if config.searches else None)
    return RunState(config, paths, workload, plan, run, builder, budget, say, on_stage, kept=kept,
                    user_metric=user_metric, task=task, reference=reference)


def new_result(config: RunConfig, plan: Plan, workload: Workload, paths: RunPaths) -> RunResult:
    """results.json before any variant: the model, the config, this machine, and what the inputs lack."""
    run = RunResult(
        run_id=paths.root.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        model=dict(workload.info) | ({"kind": plan.kind} if plan.kind else {}),
        config=config.to_dict(),
        environment=environment(),
        variants=[],
        baseline=plan.baseline,
        objective=config.objective,
    )
    if workload.dataset is None:
        run.warnings.append("no dataset: accuracy is not measured; fidelity to the baseline uses generated inputs")
    run.warnings += input_warnings(workload)
    return run


def interrupted(state: RunState, exc: KeyboardInterrupt) -> RunInterrupted:
    """SIGINT/SIGTERM mid-run: the run marked partial (and how to finish it) and saved, with signals held off."""
    run = state.run
    with signals_ignored():
        signum = signal_number(exc)
        name = signal.Signals(signum).name
        run.warnings.append(
            f"interrupted by {name} after {len(run.variants)} of {len(state.plan.specs)} variants: this run is "
            f"partial; finish it with `mcbench run --resume {state.paths.root}`"
        )
        state.say(f"interrupted by {name}: saving the {len(run.variants)} finished variant(s)")
        save(state)
    return RunInterrupted(run, state.paths, signum)


def finish(state: RunState) -> None:
    """The save stage: the last warnings, the operator profiles compared, the search's record, results.json."""
    run = state.run
    if state.reference.outputs is None:
        run.warnings.append("the baseline variant failed: fidelity to FP32 could not be measured")
    compare_op_profiles(run.variants)
    run.search = summary(run, state.config.searches, state.budget)
    save(state)


def compare_op_profiles(variants: list[VariantResult]) -> None:
    """Rewrite each operator profile's sentence against the FP32 variant of the same runtime, hardware
    profile and batch size in this run."""
    measured = [v for v in variants if v.status == "ok" and v.latency is not None]
    for v in measured:
        fp32 = [r for r in measured if r.runtime == v.runtime and r.profile == v.profile
                and r.settings.get("batch_size") == v.settings.get("batch_size")
                and all(step.startswith("export.onnx") for step in r.recipe)]
        ref = fp32[0] if fp32 else None
        if ref is None or ref is v or v.op_profile is None:
            continue
        passes = list((v.artifact or {}).get("passes", []))
        v.op_profile = with_comparison(v.op_profile, passes, v.latency.p50_ms, ref.name, ref.latency.p50_ms)


# ------------------------------------------------------------------------------------------ resume


def kept_variants(resume: RunResult | None, config: RunConfig, say: Say) -> tuple[dict[str, VariantResult], list[str]]:
    """The earlier run's finished variants (ok or skipped) whose artifact files are still there, and those whose
    stage an interrupt cut short (measured again); a candidate the search did not try for lack of time is tried now."""
    if resume is None:
        return {}, []
    kept, cut_short = {}, []
    for v in resume.variants:
        artifact = v.artifact.get("path") if v.artifact else None
        not_tried = (v.search or {}).get("stage") == "plan"
        cut = unfinished_stage(v, config)
        if cut is not None:
            say(f"{v.name}: not kept: its {cut} stage did not finish; measured again")
            cut_short.append(f"{v.name} ({cut})")
            continue
        if v.status in ("ok", "skipped") and not not_tried and (artifact is None or Path(artifact).exists()):
            kept[v.name] = v
    return kept, cut_short


def unfinished_stage(v: VariantResult, config: RunConfig) -> str | None:
    """The stage an earlier run's going variant did not finish (an interrupt cut it short), or None.

    A variant records the stage it reached and, once it goes no further, why (mcbench.search.record); one still
    going (`stopped` None) that has not reached the last stage this config needs (load, or time without a load
    test) was cut short, and is measured again from the start (its artifact comes from the cache)."""
    search = v.search or {}
    last = "load" if config.load is not None else "time"
    if v.status != "ok" or search.get("stopped") is not None or search.get("stage") not in STAGES:
        return None
    reached = STAGES.index(search["stage"])
    return STAGES[reached + 1] if reached < STAGES.index(last) else None


def note_resume(run: RunResult, resume: RunResult, paths: RunPaths, kept: int, now: int, cut_short: list[str]) -> None:
    """A resumed run keeps the earlier run's id and date, drops a write that kill -9 cut short, and says so."""
    left = [*paths.root.glob(".results.json.*.tmp"), *paths.root.glob("work/.baseline-outputs.npz.*.tmp")]
    for stale in left:  # a write cut short by kill -9
        stale.unlink(missing_ok=True)
    run.run_id, run.created = resume.run_id, resume.created
    run.warnings.append(f"resumed: {kept} finished variant(s) kept from the earlier run, {now} run now")
    if cut_short:
        run.warnings.append(f"resumed: measured again from the start, as a stage of theirs was cut short: "
                            f"{', '.join(cut_short)}")


def kept_task(kept: dict[str, VariantResult]) -> str | None:
    """The task `auto` chose the first time, as the kept variants recorded it."""
    return next((v.accuracy.task for v in kept.values() if v.accuracy is not None and v.accuracy.task), None)


def kept_reference(kept: dict[str, VariantResult], baseline: str | None, paths: RunPaths) -> Reference:
    """The kept baseline's saved outputs, every one, and its recorded roles (not inferred again); without them
    whole the baseline is not kept, and is measured again (fidelity needs them)."""
    roles = kept_roles(kept.get(baseline))
    outputs = kept_outputs(paths, len(roles) if roles else None) if baseline in kept else None
    if outputs is None:
        kept.pop(baseline or "", None)
        return Reference()
    return Reference(outputs=outputs[0], more=outputs[1:], roles=roles)


def kept_outputs(paths: RunPaths, count: int | None) -> list[np.ndarray] | None:
    """The baseline's outputs as a run saved them: the .npz of every output, or an older run's .npy of its first
    output alone; None for a file that does not load whole, or with fewer outputs than the `count` it recorded
    roles for (an older multi-output run: its baseline is measured again rather than judged on one output)."""
    try:
        if not paths.baseline_outputs.exists():
            outputs = [np.load(paths.old_baseline_outputs, allow_pickle=False)]
        else:
            saved = np.load(paths.baseline_outputs, allow_pickle=False)
            if not isinstance(saved, np.lib.npyio.NpzFile):
                return None
            with saved:
                outputs = [saved[str(i)] for i in range(len(saved.files))]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    if not outputs or (count is not None and len(outputs) != count):
        return None
    return outputs


def kept_roles(baseline: VariantResult | None) -> list[OutputRole] | None:
    """The roles a resumed run's kept baseline recorded (its outputs are kept; the roles are not inferred again)."""
    if baseline is None or baseline.accuracy is None or not baseline.accuracy.roles:
        return None
    return [OutputRole(name, r.role, r.reason, r.batch_axis) for name, r in baseline.accuracy.roles.items()]


def reuse_artifacts(builder: Builder, kept: dict[str, VariantResult]) -> None:
    """Kept variants' artifacts count as built where their files still hash as recorded."""
    for v in kept.values():
        if v.recipe and v.artifact.get("sha256"):
            builder.reuse(tuple(v.recipe), v.artifact)
