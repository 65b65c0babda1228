"""The pipeline that joins the stages: build each variant, measure it, load-test it, write results.

One variant's failure is recorded with its error and the run goes on; results.json is rewritten
atomically after every variant, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mcbench.base.files import FileError
from mcbench.base.text import first_line
from mcbench.bench.accuracy import accuracy_of
from mcbench.bench.datasets import check_class_labels
from mcbench.bench.environment import environment
from mcbench.bench.isolate import ChildError, call_in_child, error_text
from mcbench.bench.latency import QUICK_PLAN, TimingPlan
from mcbench.bench.measure import InProcessResult, measure_in_process, time_in_process
from mcbench.bench.metrics import AUTO, resolved_task
from mcbench.bench.op_profile import with_comparison
from mcbench.bench.roles import OutputRole, check_declared, onnx_output_names, output_roles
from mcbench.config import ConfigError, RunConfig
from mcbench.confirm import confirm_stage
from mcbench.load_stage import load_test_variant
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.build import BuildData, Builder
from mcbench.optimizer.hardware import usable_cores
from mcbench.optimizer.passes import check_needs
from mcbench.optimizer.profiles import Profile
from mcbench.optimizer.recipe_syntax import parse_recipe
from mcbench.optimizer.recipes import (
    RecipeError,
    VariantSpec,
    keeps_fp32,
    pass_name,
)
from mcbench.optimizer.targets import Target, why_not_here
from mcbench.plan import Plan, plan_before_loading, plan_for_model
from mcbench.reports.quality import over_budget_text, quality_metric, within_budget
from mcbench.reports.schema import RunResult, VariantResult, save_results
from mcbench.runguard import OutputError, ResultsWriteError, preflight_output, signal_number, signals_ignored
from mcbench.search import (
    STAGES,
    TIME_SHARE,
    Prices,
    TimeBudget,
    beats,
    frontier,
    not_started,
    point_of,
    points,
    record,
    stopped_side_by_side,
    suspects,
)
from mcbench.serving_stage import MIN_SERVING_S, serving_finalists, serving_search
from mcbench.workload import Workload, demo_workload, input_warnings, user_workload

Progress = Callable[[str], None]
StageHook = Callable[[str, int, int, str, "TimeBudget"], None]  # stage, index, count, candidate, budget

MEASURE_TIMEOUT_S = 900.0


@dataclass
class RunPaths:
    root: Path

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def baseline_outputs(self) -> Path:
        """The baseline's outputs, kept so a resumed run can still measure fidelity to them."""
        return self.root / "work" / "baseline-outputs.npy"

    def artifacts(self, recipe: tuple[str, ...]) -> Path:
        return self.inside(self.root / "artifacts" / (safe_name("+".join(recipe)) if recipe else "base"))

    def work(self, variant: str) -> Path:
        path = self.inside(self.root / "work" / safe_name(variant))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def inside(self, path: Path) -> Path:
        """`path`, after checking it resolves inside the run folder: no name can steer a folder outside it."""
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise OutputError(f"refusing to write {path}: it resolves outside the run folder {self.root}")
        return path


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived mid-run; `run` holds what finished, already saved to `paths.results`."""

    def __init__(self, run: RunResult, paths: RunPaths, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.run, self.paths, self.signum = run, paths, signum


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of `folder`'s path that does not exist yet (what mkdir(parents=True) would make)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


MAX_RUN_NAME = 80  # characters of the model's name in a run folder's name: far below any file system's 255 bytes


def new_run_dir(base: Path, model_name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    model_name = model_name[:MAX_RUN_NAME]
    path = base / f"{stamp}-{model_name}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = base / f"{stamp}-{model_name}-{suffix}"
    return path


def safe_name(name: str) -> str:
    """A folder name from a model name: letters, digits, '.', '_' and '-' only, so no path can be steered."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def load_user_metric(ref: str | None):
    """The user's metric function, resolved before any work starts."""
    if ref is None:
        return None
    from mcbench.base.imports import ImportFailed, load_factory

    try:
        fn = load_factory(ref)
    except ImportFailed as exc:
        raise ConfigError(f"--metric {ref}: {exc}") from exc
    if not callable(fn):
        raise ConfigError(f"--metric {ref}: not a function")
    return fn


def workload_data(config: RunConfig) -> set[str]:
    """The data a run will have for passes, known before any work: calibration always (generated
    inputs when no dataset is given), labelled validation data with the demo or a labelled dataset that may be a
    classification's (`--task classification`, or `auto`, which decides on the outputs)."""
    has_labels = config.dataset is not None or config.labels_file is not None
    labelled = config.model is None or (has_labels and config.task in ("classification", AUTO))
    return {"calibration", "validation"} if labelled else {"calibration"}


def check_data_needs(specs: list[VariantSpec], available: set[str]) -> None:
    """Refuse, before training or loading anything, a variant whose passes need data this run lacks."""
    for spec in specs:
        try:
            check_needs(tuple(s for text in spec.recipe for s in parse_recipe(text)), available)
        except RecipeError as exc:
            raise ConfigError(f"variant {spec.name}: {exc}") from exc


def build_data(workload: Workload, task: str) -> BuildData:
    """What the passes may use: calibration samples, training data, and held-out feeds with class labels for
    passes that measure top-1 accuracy (accuracy-aware quantization) where the task is a classification's."""
    labelled = workload.labels is not None and task in ("classification", AUTO)
    return BuildData(workload.calibration, workload.calibration_source, workload.train,
                     (workload.eval_samples, workload.labels) if labelled else None)


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


class Pipeline:
    def __init__(self, config: RunConfig, progress: Progress = print,
                 on_folder: Callable[[Path], object] | None = None, on_stage: StageHook | None = None) -> None:
        self.config = config
        self.say = progress
        self.on_stage = on_stage or (lambda stage, index, total, name, budget: self.say(f"[{index}/{total}] {name}"))
        self._candidates: dict[str, tuple[VariantSpec, Artifact, object]] = {}  # measured here: what loading needs
        self.baseline_outputs = None
        self.on_folder = on_folder or (lambda folder: None)  # the run folder exists (the CLI moves its log there)
        self.builder: Builder | None = None  # the build stage, once the model is loaded
        self.cut_short: list[str] = []  # a resumed run's variants whose stages an interrupt cut short
        self.user_metric = None
        self.profiles: dict[str, Profile] = {}  # the plan's, set by run() before any stage reads it
        self.task: str | None = None if config.task == AUTO else config.task  # `auto` resolves on the baseline
        self.baseline_more: list | None = None  # the baseline's second and later outputs (per-output fidelity)
        self.roles: list[OutputRole] | None = None  # what each output means, inferred on the baseline's outputs
        self.first_batch_axis: int | None = 0  # the first output's batch axis in the model's layout (load checks)
        self.prices = Prices()  # what screening a candidate costs, from what this run has seen

    def prepare(self) -> tuple[Workload, RunPaths]:
        """Load or train the model before a run folder exists for it, so bad input leaves nothing behind.

        The output folder is checked first (writable, free space), so a run that could not save its
        results fails in its first second, not after an hour. A folder that existed before (a resumed
        run) is never removed.
        """
        cfg = self.config
        preflight_output(cfg.out_dir or Path("runs"))
        if cfg.model is None:
            base_dir = cfg.out_dir or new_run_dir(Path("runs"), "digits-cnn")
            paths = RunPaths(base_dir)
            paths.root.mkdir(parents=True, exist_ok=True)
            self.on_folder(paths.root)
            self.say("training the digits CNN on scikit-learn's bundled digits ...")
            workload = demo_workload(paths.root, cfg.quick)
            self.say(f"  trained in {workload.info['train_seconds']:.1f} s")
            return workload, paths
        stem = cfg.model.rpartition(":")[2] if ":" in cfg.model else Path(cfg.model).stem
        paths = RunPaths(cfg.out_dir or new_run_dir(Path("runs"), safe_name(stem)))
        created = _first_missing(paths.root)  # runs/ or a/ of --out a/b/c: made here, removed on bad input
        paths.root.mkdir(parents=True, exist_ok=True)
        self.on_folder(paths.root)
        try:
            workload = user_workload(cfg, paths.root / "source")
            if cfg.outputs and workload.base.format == "onnx":  # a misspelt --output fails now, not after the baseline
                check_declared(cfg.outputs, onnx_output_names(workload.base.path))
        except BaseException:
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)  # bad input leaves nothing behind
            raise
        return workload, paths

    def run(self, resume: RunResult | None = None) -> tuple[RunResult, RunPaths]:
        """Plan the candidates, then take them through the stages: screen (build, quality, a short timing),
        time (full timing, for those that can reach the frontier), load (the frontier and the baseline), saving
        after each; with `resume` (an earlier run of this config in config.out_dir), keep its finished variants.

        An explicit variant list (or --exhaustive) takes every candidate through every stage, with no time budget.
        SIGINT/SIGTERM (a KeyboardInterrupt) saves what finished, marks the run interrupted and
        raises RunInterrupted; the children were already killed by bench.isolate on the way up.
        """
        plan = plan_before_loading(self.config)
        check_data_needs(plan.specs, workload_data(self.config))
        self.user_metric = load_user_metric(self.config.metric)
        workload, paths = self.prepare()
        plan = plan_for_model(self.config, plan, workload.base, workload.train is not None)
        self.say_plan(plan)
        self.profiles, specs = plan.profiles, plan.specs
        model_info = dict(workload.info) | ({"kind": plan.kind} if plan.kind else {})
        run = RunResult(
            run_id=paths.root.name,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            model=model_info,
            config=self.config.to_dict(),
            environment=environment(),
            variants=[],
            baseline=next((s.name for s in specs if s.baseline), None),
            objective=self.config.objective,
        )
        if workload.dataset is None:
            run.warnings.append("no dataset: accuracy is not measured; fidelity to the baseline uses generated inputs")
        run.warnings += input_warnings(workload)
        kept = self.kept_variants(resume, paths)
        if resume is not None:
            for stale in paths.root.glob(".results.json.*.tmp"):  # a write cut short by kill -9
                stale.unlink(missing_ok=True)
            run.run_id, run.created = resume.run_id, resume.created
            run.warnings.append(f"resumed: {len(kept)} finished variant(s) kept from the earlier run, "
                                f"{len([s for s in specs if s.name not in kept])} run now")
            if self.cut_short:
                run.warnings.append(f"resumed: measured again from the start, as a stage of theirs was cut short: "
                                    f"{', '.join(self.cut_short)}")
        self.baseline_outputs = self.kept_baseline_outputs(kept, specs, paths)
        self.roles = kept_roles(kept.get(run.baseline))
        self.first_batch_axis = self.roles[0].batch_axis if self.roles else 0
        self.builder = Builder(workload.base, build_data(workload, self.config.task), paths.artifacts,
                               self.config.cache_dir, self.say)
        self.reuse_artifacts(kept)
        budget = TimeBudget(self.config.time_budget_s if self.config.searches else None)
        try:
            self.screen(specs, kept, run, workload, paths, budget)
            self.drop_over_budget(run)
            self.time_candidates(run, workload, budget)
            if self.config.load is not None:
                self.load_candidates(run, workload, paths, budget)
            if self.baseline_outputs is not None:
                run.search = self.search_summary(run, budget)  # the decision reads which candidates were timed
                confirm_stage(run, self.config.quick, self.say)
                if self.config.load is not None and self.config.load.serving_budget_s > 0:
                    self.serving_stage(run, workload, paths)
        except KeyboardInterrupt as exc:
            with signals_ignored():
                signum = signal_number(exc)
                name = signal.Signals(signum).name
                run.warnings.append(
                    f"interrupted by {name} after {len(run.variants)} of {len(specs)} variants: this run is partial; "
                    f"finish it with `mcbench run --resume {paths.root}`"
                )
                self.say(f"interrupted by {name}: saving the {len(run.variants)} finished variant(s)")
                self.save(run, paths)
            raise RunInterrupted(run, paths, signum) from None
        if self.baseline_outputs is None:
            run.warnings.append("the baseline variant failed: fidelity to FP32 could not be measured")
        compare_op_profiles(run.variants)
        run.search = self.search_summary(run, budget)
        self.save(run, paths)
        return run, paths

    # ------------------------------------------------------------------------------------------ the stages

    def screen(self, specs: list[VariantSpec], kept: dict[str, VariantResult], run: RunResult, workload: Workload,
               paths: RunPaths, budget: TimeBudget) -> None:
        """Stage 1, every candidate in turn (lossless ones first: optimizer.recipes.search_space): build, outputs
        and quality, a short timing (the full one when the run does not search). New candidates start while the run
        has used under half its time budget and their price fits (mcbench.search.not_started)."""
        searching = self.config.searches
        plan = screening_plan(self.config.timing) if searching else self.config.timing
        lossless_untried: str | None = None  # the first candidate that keeps FP32 numerics the budget left untried
        for index, spec in enumerate(specs, start=1):
            if spec.name in kept:
                self.say(f"[{index}/{len(specs)}] {spec.name}: kept ({kept[spec.name].status}) from before")
                run.variants.append(kept[spec.name])
                continue
            reason = None if spec.baseline else self.why_not_now(spec, budget, lossless_untried)
            if reason is not None:
                lossless_untried = lossless_untried or (spec.name if keeps_fp32(spec) else None)
                run.variants.append(not_tried(spec, reason))
                self.say(f"[{index}/{len(specs)}] {spec.name}: {reason}")
                continue
            self.on_stage("screen", index, len(specs), spec.name, budget)
            result, measured = self.priced_run(spec, workload, paths, plan)
            if spec.baseline:
                budget.restart()  # the baseline is measured whatever the budget: the search's time starts now
            if spec.baseline and measured is not None:
                self.baseline_outputs, self.baseline_more = measured.outputs, measured.more_outputs
                self.roles = self.inferred_roles(measured)
                result.accuracy = self.accuracy(result, measured.outputs, measured.outputs, workload,
                                                measured.more_outputs)
                self.save_baseline_outputs(measured.outputs, paths)
            if result.status == "ok":
                record(result, "screen" if searching else "time")
            else:
                record(result, "screen", f"{result.status}: {first_line(result.error or '')}")
            run.variants.append(result)
            self.save(run, paths)

    def why_not_now(self, spec: VariantSpec, budget: TimeBudget, lossless_untried: str | None) -> str | None:
        """Why the search does not screen `spec` now (None: it does), by its price (mcbench.search.not_started)."""
        price = self.prices.of(self.builder.pending(spec.recipe))
        return not_started(budget, price, None if keeps_fp32(spec) else lossless_untried)

    def priced_run(self, spec: VariantSpec, workload: Workload, paths: RunPaths, plan: TimingPlan):
        """run_variant, with what its builds and its screening took noted for the prices of the candidates after it."""
        before, started = set(self.builder.seconds), time.monotonic()
        result, measured = self.run_variant(spec, workload, paths, self.baseline_outputs, plan)
        built = {pass_name(p[-1]): s for p, s in self.builder.seconds.items() if p not in before}
        self.prices.saw(built, time.monotonic() - started - sum(built.values()))
        return result, measured

    def drop_over_budget(self, run: RunResult) -> None:
        """Stage 2: a candidate over the quality budget goes no further; the figure says by how much."""
        metric = quality_metric(run)
        for v in self.fresh(run):
            if within_budget(run, v, metric) is False:
                record(v, v.search["stage"], f"over the quality budget: {over_budget_text(run, v, metric)}")
                self.say(f"  {v.name}: stops here, over the quality budget ({over_budget_text(run, v, metric)})")

    def time_candidates(self, run: RunResult, workload: Workload, budget: TimeBudget) -> None:
        """Stage 3 (searching only): the full timing for the baseline and every candidate that can still reach
        the frontier, most promising first, while the run has used under TIME_SHARE of its budget."""
        if not self.config.searches:
            return
        metric = quality_metric(run)
        pts = points(run, metric)
        again = screening_plan(self.config.timing) != self.config.timing
        todo = sorted(self.fresh(run), key=lambda v: (v.name != run.baseline, v.latency.p50_ms))
        stopped = stopped_side_by_side(run, suspects(run, todo, pts, metric), self.say)
        for index, v in enumerate(todo, start=1):
            if v.name in stopped:
                continue
            if not again:
                record(v, "time")  # quick: the screening timing is the full one
                continue
            if not budget.allows(TIME_SHARE):
                record(v, "screen", f"not timed in full: {budget.text()} was {TIME_SHARE:.0%} spent; its figures "
                                    f"are the screening's ({v.latency.count} samples)")
                continue
            self.on_stage("time", index, len(todo), v.name, budget)
            spec, artifact, _ = self._candidates[v.name]
            target = Target.from_dict(v.settings["in_process"])
            try:
                latency, settled = call_in_child(time_in_process, artifact.to_dict(), target.to_dict(),
                                                 workload.timing_feeds, self.config.timing, spec.batch_size,
                                                 timeout_s=MEASURE_TIMEOUT_S)
            except ChildError as exc:
                record(v, "screen", f"full timing failed: {first_line(error_text(exc))}")
                continue
            v.latency = latency
            if not settled:
                v.warnings.append(f"in-process median did not settle within {self.config.timing.max_seconds:.0f} s "
                                  f"(CV {latency.cv:.0%}): the machine is noisy")
            record(v, "time")
            self.say(f"  {v.name}: p50 {latency.p50_ms:.3f} ms, p99 {latency.p99_ms:.3f} ms (n={latency.count})")

    def load_candidates(self, run: RunResult, workload: Workload, paths: RunPaths, budget: TimeBudget) -> None:
        """Stage 4: the HTTP load test for the frontier (fastest first) and the baseline; every measured
        candidate when the run does not search. The first always runs; later ones only if they fit the budget."""
        metric = quality_metric(run)
        candidates = [v for v in self.fresh(run) if v.name in self._candidates]
        if self.config.searches:
            going = {v.name for v in candidates}  # a candidate the search stopped is no frontier for the rest:
            # its short screening p50 could otherwise beat a rival's full one and leave nothing load-tested
            front = frontier([p for p in points(run, metric) if p.name in going])
            names = [p.name for p in front[:1]] + [run.baseline] + [p.name for p in front[1:]]  # the answer first
            for v in candidates:
                if v.name not in names:
                    by = next((p for p in front if beats(p, point_of(run, v, metric))), None)
                    record(v, v.search["stage"], "not load-tested: not on the frontier" +
                           (f" ({by.name} is as fast or faster at no lower quality)" if by else ""))
            candidates = sorted((v for v in candidates if v.name in names), key=lambda v: names.index(v.name))
        estimate = load_seconds_estimate(self.config.load)
        for index, v in enumerate(candidates, start=1):
            spec, artifact, outputs = self._candidates[v.name]
            if index > 1 and budget.left() < estimate:
                record(v, v.search["stage"], f"not load-tested: {budget.text()} had {max(budget.left(), 0):.0f} s "
                                             f"left, a load test takes about {estimate:.0f} s")
                continue
            if spec.batch_size > 1:
                v.warnings.append(f"in-process figures are for batches of {spec.batch_size}; "
                                  "the HTTP load test runs at batch 1 and is kept to the batch-1 variant")
                record(v, v.search["stage"], f"not load-tested: it runs batches of {spec.batch_size}")  # finished
                continue
            self.on_stage("load", index, len(candidates), v.name, budget)
            self.load_test(spec, artifact, workload, paths, v, outputs)
            record(v, "load", None if v.status == "ok" else first_line(v.error or "failed"))
            self.save(run, paths)

    def serving_stage(self, run: RunResult, workload: Workload, paths: RunPaths) -> None:
        """Stage 5: the serving search (mcbench.serving_stage) for the recommendation, then up to two more frontier
        variants, each taking what is left of the serving budget."""
        plan, started = self.config.load, time.monotonic()
        finalists = serving_finalists(run, set(self._candidates))
        for index, name in enumerate(finalists, start=1):
            left = plan.serving_budget_s - (time.monotonic() - started)
            if left < MIN_SERVING_S:
                run.warnings.append(f"serving search not run for {', '.join(finalists[index - 1:])}: the "
                                    f"{plan.serving_budget_s:g} s serving budget was spent")
                break
            spec, artifact, outputs = self._candidates[name]
            self.say(f"[serving {index}/{len(finalists)}] {name}")
            requests = load_requests(workload, outputs, answers=plan.answers, batch_axis=self.first_batch_axis)
            v = run.variant(name)
            v.serving = serving_search(name, artifact, spec.target, requests, plan, self.profiles.get(spec.profile
                                       or ""), paths.work(spec.name), left, self.say)
            self.save(run, paths)

    def fresh(self, run: RunResult) -> list[VariantResult]:
        """The candidates measured in this run (not kept from an earlier one) that are still going."""
        return [v for v in run.variants if v.status == "ok" and v.name in self._candidates
                and v.search is not None and v.search.get("stopped") is None and v.latency is not None]

    def search_summary(self, run: RunResult, budget: TimeBudget) -> dict:
        not_tried = [v.name for v in run.variants if (v.search or {}).get("stage") == "plan"]
        return {"searched": self.config.searches, "time_budget_s": budget.seconds,
                "elapsed_s": round(budget.elapsed(), 1), "stages": list(STAGES), "not_tried": not_tried}

    def kept_variants(self, resume: RunResult | None, paths: RunPaths) -> dict[str, VariantResult]:
        """The earlier run's finished variants (ok or skipped) whose artifact files are still there; a candidate
        the search did not try for lack of time is tried now."""
        if resume is None:
            return {}
        kept = {}
        for v in resume.variants:
            artifact = v.artifact.get("path") if v.artifact else None
            not_tried = (v.search or {}).get("stage") == "plan"
            cut = self.unfinished_stage(v)
            if cut is not None:
                self.say(f"{v.name}: not kept: its {cut} stage did not finish; measured again")
                self.cut_short.append(f"{v.name} ({cut})")
                continue
            if v.status in ("ok", "skipped") and not not_tried and (artifact is None or Path(artifact).exists()):
                kept[v.name] = v
                if self.task is None and v.accuracy is not None and v.accuracy.task:
                    self.task = v.accuracy.task  # the task `auto` chose the first time
        return kept

    def unfinished_stage(self, v: VariantResult) -> str | None:
        """The stage an earlier run's going variant did not finish (an interrupt cut it short), or None.

        A variant records the stage it reached and, once it goes no further, why (mcbench.search.record); one still
        going (`stopped` None) that has not reached the last stage this config needs (load, or time without a load
        test) was cut short, and is measured again from the start (its artifact comes from the cache)."""
        search = v.search or {}
        last = "load" if self.config.load is not None else "time"
        if v.status != "ok" or search.get("stopped") is not None or search.get("stage") not in STAGES:
            return None
        reached = STAGES.index(search["stage"])
        return STAGES[reached + 1] if reached < STAGES.index(last) else None

    def reuse_artifacts(self, kept: dict[str, VariantResult]) -> None:
        """Kept variants' artifacts count as built where their files still hash as recorded."""
        for v in kept.values():
            if v.recipe and v.artifact.get("sha256"):
                self.builder.reuse(tuple(v.recipe), v.artifact)

    def kept_baseline_outputs(self, kept: dict[str, VariantResult], specs: list[VariantSpec], paths: RunPaths):
        """The kept baseline's saved outputs; without them the baseline is measured again (fidelity needs them)."""
        baseline = next((s.name for s in specs if s.baseline), None)
        if baseline not in kept:
            return None
        try:
            return np.load(paths.baseline_outputs, allow_pickle=False)
        except (OSError, ValueError):
            del kept[baseline]
            return None

    def save_baseline_outputs(self, outputs, paths: RunPaths) -> None:
        try:
            paths.baseline_outputs.parent.mkdir(parents=True, exist_ok=True)
            np.save(paths.baseline_outputs, np.asarray(outputs), allow_pickle=False)
        except OSError as exc:
            raise ResultsWriteError(f"cannot write {paths.baseline_outputs}: {exc.strerror}") from None

    def save(self, run: RunResult, paths: RunPaths) -> None:
        """results.json, atomically; a failed write says which file and why, and leaves the last good one."""
        try:
            save_results(run, paths.results)
        except (OSError, FileError) as exc:  # FileError: the path turned into something not a regular file
            raise ResultsWriteError(
                f"cannot write {paths.results}: {exc.strerror or exc}; it still holds the results as last saved "
                f"({len(run.variants) - 1} variant(s))"
            ) from None

    def say_plan(self, plan: Plan) -> None:
        """The model's kind and why each candidate is in the search, where the run searches the kind's space."""
        if plan.kind:
            self.say(f"model kind: {plan.kind['kind']} ({plan.kind['reason']})")
            for spec in plan.specs:
                self.say(f"  {spec.name}: {spec.why}")

    def run_variant(
        self, spec: VariantSpec, workload: Workload, paths: RunPaths, baseline_outputs, plan: TimingPlan
    ) -> tuple[VariantResult, object]:
        """Build the variant, then measure its outputs, quality and latency in a child process."""
        result = VariantResult(spec.name, spec.target.runtime, list(spec.recipe), status="failed",
                               profile=spec.profile, settings={"why": spec.why} if spec.why else {})
        try:
            artifact = self.builder.build(spec.recipe)
            result.artifact = self.builder.manifest(artifact)
            result.passes = [dict(r) for r in artifact.passes]
            target = spec.target if spec.target.threads else spec.target.with_threads(len(usable_cores()))
            result.settings.update({"in_process": target.to_dict(), "batch_size": spec.batch_size})
            reason = spec.skip or why_not_here(target, artifact, spec.batch_size)
            if reason:
                result.status, result.error = "skipped", reason
                self.say(f"  compiled, not measured: {reason}")
                return result, None
            measured = self.measure(spec, artifact, target, workload, plan)
        except ChildError as exc:
            result.error = error_text(exc)
            result.exit_status, result.stderr_tail = exc.exit_status, exc.stderr_tail or None
            self.say(f"  failed: {first_line(result.error)}")
            return result, None
        except OutputError:
            raise
        except Exception as exc:  # a pass or runtime that fails (OpenVINO cannot read the graph ...) fails this one
            result.error = f"{type(exc).__name__}: {exc}"
            self.say(f"  failed: {first_line(result.error)}")
            return result, None
        result.latency = measured.latency
        result.op_profile = measured.op_profile
        if not measured.settled and plan == self.config.timing:
            result.warnings.append(
                f"in-process median did not settle within {plan.max_seconds:.0f} s "
                f"(CV {measured.latency.cv:.0%}): the machine is noisy"
            )
        if not spec.baseline:
            try:
                result.accuracy = self.accuracy(result, measured.outputs, baseline_outputs, workload,
                                                measured.more_outputs)
            except Exception as exc:  # outputs its quality cannot be judged on fail this candidate, not the run
                result.error = f"its quality could not be measured: {type(exc).__name__}: {exc}"
                self.say(f"  failed: {first_line(result.error)}")
                return result, None
        result.status = "ok"
        self._candidates[spec.name] = (spec, artifact, measured.outputs)
        self.say(
            f"  in-process p50 {measured.latency.p50_ms:.3f} ms, p99 {measured.latency.p99_ms:.3f} ms "
            f"(n={measured.latency.count})"
        )
        return result, measured

    def inferred_roles(self, measured: InProcessResult) -> list[OutputRole]:
        """Each output's role, inferred on the baseline's outputs or declared with --output, said on the terminal."""
        outputs = [measured.outputs, *(measured.more_outputs or [])]
        axes = measured.batch_axes or [0] * len(outputs)
        roles = output_roles(list(measured.output_names), outputs, self.config.outputs, axes)
        self.first_batch_axis = axes[0]
        for role in roles:
            self.say(role.line())
        return roles

    def accuracy(self, result: VariantResult, outputs, baseline, workload: Workload, more=None):
        """Task metrics and fidelity; a user metric that raises becomes a warning, not a lost variant."""
        if self.task is None:  # `auto` is decided once, on the first outputs measured (the baseline's)
            self.task = resolved_task(self.config.task, [outputs, *(more or [])])
        if self.task == "classification":
            check_class_labels(self.config.dataset or self.config.labels_file, workload.labels, outputs)
        task, also = self.task, {"more": more, "baseline_more": self.baseline_more, "roles": self.roles}
        try:
            return accuracy_of(outputs, baseline, workload.labels, workload.dataset, task, self.user_metric, **also)
        except Exception as exc:
            if self.user_metric is None:
                raise
            result.warnings.append(f"--metric {self.config.metric} failed: {type(exc).__name__}: {exc}")
            return accuracy_of(outputs, baseline, workload.labels, workload.dataset, task, **also)

    def measure(self, spec: VariantSpec, artifact: Artifact, target, workload: Workload,
                plan: TimingPlan) -> InProcessResult:
        self.say(f"  measuring accuracy on {len(workload.eval_samples)} samples and in-process latency ...")
        return call_in_child(
            measure_in_process,
            artifact.to_dict(),
            target.to_dict(),
            workload.eval_samples,
            workload.timing_feeds,
            plan,
            spec.batch_size,
            timeout_s=MEASURE_TIMEOUT_S,
        )

    def load_test(self, spec: VariantSpec, artifact: Artifact, workload: Workload, paths: RunPaths,
                  result: VariantResult, outputs=None) -> None:
        """The load stage for one variant (mcbench.load_stage); a failure becomes the variant's error."""
        profile = self.profiles.get(spec.profile or "")
        requests = load_requests(workload, outputs, answers=self.config.load.answers,
                                 batch_axis=self.first_batch_axis)
        tested = load_test_variant(spec.name, artifact, spec.target, requests, self.config.load, profile,
                                   paths.work(spec.name), self.say)
        result.settings["server"] = tested.server
        result.warnings += tested.warnings
        if tested.error is not None:
            result.status, result.error = "failed", tested.error
            return
        result.load, result.capacity = tested.load, tested.capacity


def kept_roles(baseline: VariantResult | None) -> list[OutputRole] | None:
    """The roles a resumed run's kept baseline recorded (its outputs are kept; the roles are not inferred again)."""
    if baseline is None or baseline.accuracy is None or not baseline.accuracy.roles:
        return None
    return [OutputRole(name, r.role, r.reason, r.batch_axis) for name, r in baseline.accuracy.roles.items()]


def screening_plan(full: TimingPlan) -> TimingPlan:
    """The first, short look at a candidate: enough for its median's interval, never longer than the full plan."""
    return TimingPlan(warmup_runs=min(full.warmup_runs, QUICK_PLAN.warmup_runs),
                      min_runs=min(full.min_runs, QUICK_PLAN.min_runs),
                      min_seconds=min(full.min_seconds, QUICK_PLAN.min_seconds),
                      max_seconds=min(full.max_seconds, QUICK_PLAN.max_seconds),
                      settle_tolerance=max(full.settle_tolerance, QUICK_PLAN.settle_tolerance))


def not_tried(spec: VariantSpec, reason: str) -> VariantResult:
    result = VariantResult(spec.name, spec.target.runtime, list(spec.recipe), status="skipped", error=reason,
                           profile=spec.profile, settings={"why": spec.why} if spec.why else {})
    record(result, "plan", reason)
    return result


def load_seconds_estimate(plan) -> float:
    """About how long one variant's load test takes: every step at its base length, plus start-up."""
    steps = len(plan.users) + max(len(plan.rates), len(plan.rate_fractions))
    return (steps * (plan.step_seconds + 1.5) + 5.0) * (2 if plan.max_batch > 1 else 1)


def load_requests(workload: Workload, outputs, count: int = 8, answers: str = "binary",
                  batch_axis: int | None = 0):
    """A few evaluation inputs to send in turn, with the variant's offline first output for each to check against
    (its rows, kept batch first, moved back to the model's layout); `answers` the form the answers are asked in
    (binary data or JSON)."""
    import numpy as np

    from mcbench.bench.load import Requests

    samples = workload.eval_samples[:count] or [workload.timing_feeds]
    expected = None
    if outputs is not None and len(workload.eval_samples):
        rows = len(outputs) // len(workload.eval_samples)
        rows_of = [np.asarray(outputs[i * rows:(i + 1) * rows]) for i in range(len(samples))]
        expected = [[r[0] if batch_axis is None else np.moveaxis(r, 0, batch_axis)] for r in rows_of]
    return Requests.encode(samples, expected, answers)
