"""The pipeline that joins the stages: build each variant, measure it, load-test it, write results.

One variant's failure is recorded with its error and the run goes on; results.json is rewritten
atomically after every variant, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mcbench.bench.accuracy import accuracy_of
from mcbench.bench.environment import environment
from mcbench.bench.isolate import ChildError, call_in_child, exit_status_text
from mcbench.bench.latency import QUICK_PLAN, TimingPlan
from mcbench.bench.measure import InProcessResult, measure_in_process, time_in_process
from mcbench.bench.metrics import AUTO, resolved_task
from mcbench.bench.op_profile import with_comparison
from mcbench.config import ConfigError, RunConfig
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.cache import ArtifactCache, cache_key, data_digest, model_digest, validation_digest
from mcbench.optimizer.hardware import cpu_info, split_cores, usable_cores
from mcbench.optimizer.model_kind import ModelKind, detect_kind
from mcbench.optimizer.passes import PassContext, PassError, apply_passes, check_needs
from mcbench.optimizer.profiles import Profile, ProfileError, find_profile
from mcbench.optimizer.recipe_syntax import parse_recipe
from mcbench.optimizer.recipes import (
    RecipeError,
    VariantSpec,
    all_kind_variants,
    default_variants,
    parse_named_recipe,
    profile_recipe_variants,
    profile_variants,
    recipe_variants,
    search_space,
    with_batch_sizes,
)
from mcbench.optimizer.targets import Target, TargetError, skip_reason
from mcbench.reports.quality import over_budget_text, quality_metric, within_budget
from mcbench.reports.schema import RunResult, VariantResult, save_results
from mcbench.runguard import OutputError, ResultsWriteError, preflight_output, signal_number, signals_ignored
from mcbench.search import (
    SCREEN_SHARE,
    STAGES,
    TIME_SHARE,
    TimeBudget,
    beats,
    dominated_by,
    dominated_text,
    frontier,
    point_of,
    points,
    record,
)
from mcbench.workload import Workload, demo_workload, user_workload

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
    from mcbench.optimizer.targets import TargetError, load_factory

    try:
        fn = load_factory(ref)
    except TargetError as exc:
        raise ConfigError(f"--metric {ref}: {exc}") from exc
    if not callable(fn):
        raise ConfigError(f"--metric {ref}: not a function")
    return fn


def hardware_mismatch(profile) -> str | None:
    """Why a profile's CPU is not this machine's (missing ISA features, too few cores), or None.

    It decides for the profile's CPU targets; GPU targets are checked one by one (providers, devices).
    """
    missing = [f for f in profile.isa if f not in cpu_info()["isa"]]
    if missing:
        return f"this machine lacks {', '.join(missing)}: profile {profile.name} describes another CPU"
    if profile.cores > len(usable_cores()):
        return f"profile {profile.name} has {profile.cores} cores, this machine {len(usable_cores())}"
    return None


def load_cores(profile: Profile | None) -> tuple[list[int], list[int]]:
    """The profile's server and load-generator cores where this machine has them all; else half and half."""
    here = set(usable_cores())
    if profile and profile.server_cores and profile.loadgen_cores:
        if set(profile.server_cores) | set(profile.loadgen_cores) <= here:
            return list(profile.server_cores), list(profile.loadgen_cores)
    return split_cores(sorted(here))


def batch_skip_reason(artifact: Artifact, batch_size: int) -> str | None:
    """Why an artifact cannot run batches of this size (an ONNX model with a fixed batch axis), or None."""
    if batch_size == 1 or artifact.format != "onnx":
        return None
    from mcbench.optimizer.graph_stats import fixed_batch_inputs

    fixed = fixed_batch_inputs(artifact.path)
    if fixed:
        return f"input(s) {', '.join(fixed)} have a fixed batch axis: batch size {batch_size} cannot run"
    return None


def _unique_names(specs: list[VariantSpec]) -> list[VariantSpec]:
    seen: dict[str, str] = {}
    for s in specs:
        if s.name in seen and seen[s.name] != "+".join(s.recipe):
            raise ConfigError(f"two recipes give the variant name {s.name!r}; name them with NAME=RECIPE")
        seen[s.name] = "+".join(s.recipe)
    return [s for i, s in enumerate(specs) if s.name not in {t.name for t in specs[:i]}]


def select_variants(specs: list[VariantSpec], names: tuple[str, ...]) -> list[VariantSpec]:
    if not names:
        return specs
    known = {s.name for s in specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown)}; this model has: {', '.join(sorted(known))}")
    baseline = [s for s in specs if s.baseline]
    return baseline + [s for s in specs if s.name in names and not s.baseline]


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


def workload_validation(workload: Workload, task: str):
    """Held-out feeds and class labels for passes that measure top-1 accuracy (accuracy-aware quantization)."""
    if workload.labels is None or task not in ("classification", AUTO):
        return None
    return workload.eval_samples, workload.labels


def compare_op_profiles(variants: list[VariantResult]) -> None:
    """Rewrite each operator profile's sentence against the FP32 variant of the same runtime, hardware
    profile and batch size in this run."""
    measured = [v for v in variants if v.status == "ok" and v.latency is not None]
    for v in measured:
        fp32 = [r for r in measured if r.runtime == v.runtime and r.profile == v.profile
                and r.settings.get("batch_size") == v.settings.get("batch_size")
                and all(step == "export.onnx" for step in r.recipe)]
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
        self._built: dict[tuple[str, ...], Artifact] = {}
        self._manifests: dict[Path, dict] = {}  # variants that share an artifact hash and inspect it once
        self._input_digests: tuple[str, ...] | None = None  # model, calibration, train, validation data
        self.user_metric = None
        self.profiles: dict[str, Profile] = {}
        self.task: str | None = None if config.task == AUTO else config.task  # `auto` resolves on the baseline
        self.baseline_more: list | None = None  # the baseline's second and later outputs (per-output fidelity)

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
        specs = select_variants(self.variant_matrix(), self.config.variants)
        check_data_needs(specs, workload_data(self.config))
        self.user_metric = load_user_metric(self.config.metric)
        workload, paths = self.prepare()
        model_info = dict(workload.info)
        if self.uses_default_matrix():
            specs, model_info["kind"] = self.kind_matrix(workload)
        run = RunResult(
            run_id=paths.root.name,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            model=model_info,
            config=self.config.to_dict(),
            environment=environment(),
            variants=[],
            baseline=next((s.name for s in specs if s.baseline), None),
        )
        if workload.dataset is None:
            run.warnings.append("no dataset: accuracy is not measured; fidelity to the baseline uses generated inputs")
        kept = self.kept_variants(resume, paths)
        if resume is not None:
            for stale in paths.root.glob(".results.json.*.tmp"):  # a write cut short by kill -9
                stale.unlink(missing_ok=True)
            run.run_id, run.created = resume.run_id, resume.created
            run.warnings.append(f"resumed: {len(kept)} finished variant(s) kept from the earlier run, "
                                f"{len([s for s in specs if s.name not in kept])} run now")
        baseline_outputs = self.kept_baseline_outputs(kept, specs, paths)
        self.reuse_artifacts(kept)
        budget = TimeBudget(self.config.time_budget_s if self.config.searches else None)
        try:
            self.screen(specs, kept, run, workload, paths, baseline_outputs, budget)
            self.drop_over_budget(run)
            self.time_candidates(run, workload, budget)
            if self.config.load is not None:
                self.load_candidates(run, workload, paths, budget)
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
               paths: RunPaths, baseline_outputs, budget: TimeBudget) -> None:
        """Stage 1, every candidate in turn: build, outputs and quality, a short timing (the full one when the
        run does not search). New candidates start while the run has used under half its time budget."""
        searching = self.config.searches
        plan = screening_plan(self.config.timing) if searching else self.config.timing
        self.baseline_outputs = baseline_outputs
        for index, spec in enumerate(specs, start=1):
            if spec.name in kept:
                self.say(f"[{index}/{len(specs)}] {spec.name}: kept ({kept[spec.name].status}) from before")
                run.variants.append(kept[spec.name])
                continue
            if not spec.baseline and not budget.allows(SCREEN_SHARE):
                run.variants.append(not_tried(spec, f"not tried: {budget.text()} was half spent before its turn"))
                self.say(f"[{index}/{len(specs)}] {spec.name}: not tried ({budget.text()})")
                continue
            self.on_stage("screen", index, len(specs), spec.name, budget)
            result, measured = self.run_variant(spec, workload, paths, self.baseline_outputs, plan)
            if spec.baseline and measured is not None:
                self.baseline_outputs, self.baseline_more = measured.outputs, measured.more_outputs
                result.accuracy = self.accuracy(result, measured.outputs, measured.outputs, workload,
                                                measured.more_outputs)
                self.save_baseline_outputs(measured.outputs, paths)
            if result.status == "ok":
                record(result, "screen" if searching else "time")
            else:
                record(result, "screen", f"{result.status}: {first_line_of(result.error or '')}")
            run.variants.append(result)
            self.save(run, paths)

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
        for index, v in enumerate(todo, start=1):
            p = point_of(run, v, metric)
            by = dominated_by(p, pts) if p is not None and v.name != run.baseline else None
            if by is not None:
                record(v, "screen", dominated_text(p, by))
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
                record(v, "screen", f"full timing failed: {first_line_of(child_error_text(exc))}")
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
            front = frontier(points(run, metric))
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
                continue
            self.on_stage("load", index, len(candidates), v.name, budget)
            self.load_test(spec, artifact, workload, paths, v, outputs)
            record(v, "load", None if v.status == "ok" else first_line_of(v.error or "failed"))
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
        """The earlier run's finished variants (ok or skipped) whose artifact files are still there."""
        if resume is None:
            return {}
        kept = {}
        for v in resume.variants:
            artifact = v.artifact.get("path") if v.artifact else None
            if v.status in ("ok", "skipped") and (artifact is None or Path(artifact).exists()):
                kept[v.name] = v
                if self.task is None and v.accuracy is not None and v.accuracy.task:
                    self.task = v.accuracy.task  # the task `auto` chose the first time
        return kept

    def reuse_artifacts(self, kept: dict[str, VariantResult]) -> None:
        """Kept variants' artifacts count as built (when their files still hash as recorded): a resumed run
        builds on them instead of rewriting files that kept results describe."""
        from mcbench.optimizer.artifact import sha256_of

        for v in kept.values():
            if not v.recipe or not v.artifact.get("sha256"):
                continue
            try:
                artifact = Artifact.from_dict(v.artifact)
                if sha256_of(artifact.path) == v.artifact["sha256"]:
                    self._built.setdefault(tuple(v.recipe), artifact)
            except (KeyError, TypeError, ValueError, OSError):
                continue  # rebuilt like any other

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
        except OSError as exc:
            raise ResultsWriteError(
                f"cannot write {paths.results}: {exc.strerror or exc}; it still holds the results as last saved "
                f"({len(run.variants) - 1} variant(s))"
            ) from None

    def uses_default_matrix(self) -> bool:
        return not self.config.profiles and not self.config.recipes

    def kind_matrix(self, workload: Workload) -> tuple[list[VariantSpec], dict[str, str]]:
        """The default matrix for the model's kind, said in the terminal with why each variant is in it."""
        try:
            kind = detect_kind(workload.base)
        except Exception as exc:  # an unreadable graph still gets the 0.1 matrix, with the reason recorded
            kind = ModelKind("other", f"not inspected: {type(exc).__name__}: {first_line_of(str(exc))}")
        space = search_space(kind.kind, self.config.from_torch, workload.train is not None)
        specs = select_variants(self.narrowed(space), self.config.variants)
        self.say(f"model kind: {kind.kind} ({kind.reason})")
        for spec in specs:
            self.say(f"  {spec.name}: {spec.why}")
        return specs, kind.to_dict()

    def narrowed(self, space: list[VariantSpec]) -> list[VariantSpec]:
        """The search space as the run file's [search] narrows (exclude) and extends (add) it."""
        cfg = self.config
        kept = [s for s in space if s.baseline or not any(fnmatch.fnmatch(s.name, p) for p in cfg.search_exclude)]
        added = []
        for text in cfg.search_add:
            try:
                added += recipe_variants(parse_named_recipe(text), cfg.source_format)
            except RecipeError as exc:
                raise ConfigError(f"[search] add {text!r}: {exc}") from exc
        return _unique_names(kept + [replace(s, why=s.why or "added by the run file's [search]") for s in added])

    def variant_matrix(self) -> list[VariantSpec]:
        """The default variants, or the FP32 baseline plus each --profile's matrix, names prefixed by profile.

        Before the model is loaded its kind is unknown: the default matrix is then every variant some
        kind's matrix has (run() narrows it to the model's kind once loaded).
        """
        from_torch = self.config.from_torch
        if self.uses_default_matrix():
            return all_kind_variants(from_torch)
        specs = [s for s in default_variants(from_torch) if s.baseline]
        specs += self.recipe_matrix()
        if not self.config.profiles:
            return _unique_names(specs)
        for name in self.config.profiles:
            try:
                profile = find_profile(name)
            except ProfileError as exc:
                raise ConfigError(str(exc)) from exc
            self.profiles[profile.name] = profile
            cpu_mismatch = hardware_mismatch(profile)
            try:
                recipes = profile_recipe_variants(profile, self.config.source_format)
            except RecipeError as exc:
                raise ConfigError(f"profile {profile.name}: recipes: {exc}") from exc
            for s in with_batch_sizes(profile_variants(profile, from_torch) + recipes, profile.batch_sizes):
                skip = cpu_mismatch if s.target.device == "cpu" else None
                specs.append(replace(s, name=f"{profile.name}:{s.name}", profile=profile.name, skip=skip))
        return _unique_names(specs)

    def recipe_matrix(self) -> list[VariantSpec]:
        """The variants of each --recipe, checked against the passes before any work (ConfigError if one cannot)."""
        specs: list[VariantSpec] = []
        for text in self.config.recipes:
            try:
                specs += recipe_variants(parse_named_recipe(text), self.config.source_format)
            except RecipeError as exc:
                raise ConfigError(f"--recipe {text!r}: {exc}") from exc
        return specs

    def run_variant(
        self, spec: VariantSpec, workload: Workload, paths: RunPaths, baseline_outputs, plan: TimingPlan
    ) -> tuple[VariantResult, object]:
        """Build the variant, then measure its outputs, quality and latency in a child process."""
        result = VariantResult(spec.name, spec.target.runtime, list(spec.recipe), status="failed",
                               profile=spec.profile, settings={"why": spec.why} if spec.why else {})
        try:
            artifact = self.build(spec, workload, paths)
            if artifact.path not in self._manifests:
                self._manifests[artifact.path] = artifact.manifest()
            result.artifact = dict(self._manifests[artifact.path])
            result.passes = [dict(r) for r in artifact.passes]
            target = spec.target if spec.target.threads else spec.target.with_threads(len(usable_cores()))
            result.settings.update({"in_process": target.to_dict(), "batch_size": spec.batch_size})
            reason = spec.skip or skip_reason(target) or batch_skip_reason(artifact, spec.batch_size)
            if reason:
                result.status, result.error = "skipped", reason
                self.say(f"  compiled, not measured: {reason}")
                return result, None
            measured = self.measure(spec, artifact, target, workload, plan)
        except ChildError as exc:
            result.error = child_error_text(exc)
            result.exit_status, result.stderr_tail = exc.exit_status, exc.stderr_tail or None
            self.say(f"  failed: {first_line_of(result.error)}")
            return result, None
        except OutputError:
            raise
        except (PassError, TargetError, ValueError, OSError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            self.say(f"  failed: {result.error}")
            return result, None
        result.latency = measured.latency
        result.op_profile = measured.op_profile
        if not measured.settled and plan == self.config.timing:
            result.warnings.append(
                f"in-process median did not settle within {plan.max_seconds:.0f} s "
                f"(CV {measured.latency.cv:.0%}): the machine is noisy"
            )
        if not spec.baseline:
            result.accuracy = self.accuracy(result, measured.outputs, baseline_outputs, workload,
                                            measured.more_outputs)
        result.status = "ok"
        self._candidates[spec.name] = (spec, artifact, measured.outputs)
        self.say(
            f"  in-process p50 {measured.latency.p50_ms:.3f} ms, p99 {measured.latency.p99_ms:.3f} ms "
            f"(n={measured.latency.count})"
        )
        return result, measured

    def accuracy(self, result: VariantResult, outputs, baseline, workload: Workload, more=None):
        """Task metrics and fidelity; a user metric that raises becomes a warning, not a lost variant."""
        if self.task is None:  # `auto` is decided once, on the first outputs measured (the baseline's)
            self.task = resolved_task(self.config.task, [outputs, *(more or [])])
        task, also = self.task, {"more": more, "baseline_more": self.baseline_more}
        try:
            return accuracy_of(outputs, baseline, workload.labels, workload.dataset, task, self.user_metric, **also)
        except Exception as exc:
            if self.user_metric is None:
                raise
            result.warnings.append(f"--metric {self.config.metric} failed: {type(exc).__name__}: {exc}")
            return accuracy_of(outputs, baseline, workload.labels, workload.dataset, task, **also)

    def build(self, spec: VariantSpec, workload: Workload, paths: RunPaths) -> Artifact:
        """Apply the recipe's passes, reusing any prefix built in this run or found in the cache."""
        artifact = workload.base
        cache = ArtifactCache(self.config.cache_dir) if self.config.cache_dir else None
        for i in range(1, len(spec.recipe) + 1):
            prefix = spec.recipe[:i]
            if prefix not in self._built:
                self._built[prefix] = self.build_step(artifact, prefix, workload, paths, cache)
            artifact = self._built[prefix]
        return artifact

    def build_step(self, artifact: Artifact, prefix: tuple[str, ...], workload: Workload, paths: RunPaths,
                   cache: ArtifactCache | None) -> Artifact:
        """The last step of `prefix` applied to `artifact`: from the cache when its key is there, else run."""
        if prefix[-1] == "export.onnx" and artifact.format == "onnx":
            return artifact  # nothing to build; an ONNX file (and its external data) is not copied into the cache
        started = time.perf_counter()
        validation = workload_validation(workload, self.config.task)
        ctx = PassContext(workload.calibration, workload.calibration_source, train=workload.train,
                          validation=validation)

        def produce(out_dir: Path) -> Artifact:
            return apply_passes(artifact, prefix[-1:], ctx, out_dir)

        if cache is None:
            built = produce(paths.artifacts(prefix))
        else:
            model, calibration, train, validation_data = self._digests(workload)
            key = cache_key(model, prefix, calibration, train, validation_data)
            cached = cache.get(key)
            if cached is not None:
                self.say(f"  reused {prefix[-1]} from the cache ({cache.entry(key)})")
                return cached
            built = cache.build(key, prefix, produce)
        for message in ctx.messages:
            self.say(f"  {message}")
        self.say(f"  built {prefix[-1]} in {time.perf_counter() - started:.1f} s")
        return built

    def _digests(self, workload: Workload) -> tuple[str, ...]:
        """What the cache keys hash, once a run: they do not change between its build steps."""
        if self._input_digests is None:
            self._input_digests = (model_digest(workload.base), data_digest(workload.calibration),
                                   data_digest(workload.train),
                                   validation_digest(workload_validation(workload, self.config.task)))
        return self._input_digests

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

    def load_test(
        self, spec: VariantSpec, artifact: Artifact, workload: Workload, paths: RunPaths, result: VariantResult,
        outputs=None,
    ) -> None:
        """Serve the variant in its own process on the server cores; drive it with Locust on the others.

        Both sweeps run; with `max_batch` > 1 they run again against a server that batches, to compare.
        A server or Locust that fails becomes this variant's recorded error, never a hang.
        """
        from mcbench.bench.load import LoadError, StepRules

        plan = self.config.load
        profile = self.profiles.get(spec.profile or "")
        server_cores, loadgen_cores = load_cores(profile)
        target = spec.target.with_threads(len(server_cores))
        result.settings["server"] = {**target.to_dict(), "cores": server_cores}
        work = paths.work(spec.name)
        spec_path = work / "server.json"
        server_spec = {"name": spec.name, "artifact": artifact.to_dict(), "target": target.to_dict()}
        spec_path.write_text(json.dumps(server_spec))
        budget = (profile.latency_budget_ms if profile and profile.latency_budget_ms else plan.budget_p99_ms)
        rules = StepRules(plan.step_seconds, plan.warmup_s, plan.max_step_seconds, budget_p99_ms=budget,
                          arrivals=plan.arrivals, check_every=plan.check_every)
        requests = load_requests(workload, outputs)
        self.say(f"  load test: closed loop {'-'.join(map(str, plan.users))} users, then open loop; "
                 f"{plan.step_seconds:g} s a step, p99 budget {budget:g} ms ...")
        try:
            load = self._sweeps(spec, spec_path, server_cores, loadgen_cores, target, requests, rules, work, [])
        except (LoadError, RuntimeError, OSError) as exc:
            result.status = "failed"
            result.error = f"load test: {type(exc).__name__}: {exc}"
            self.say(f"  failed: {result.error}")
            return
        if plan.max_batch > 1:
            flags = ["--max-batch", str(plan.max_batch), "--max-wait-ms", str(plan.max_wait_ms)]
            self.say(f"  again with dynamic batching (max batch {plan.max_batch}, {plan.max_wait_ms:g} ms) ...")
            try:
                batched = self._sweeps(spec, spec_path, server_cores, loadgen_cores, target, requests, rules,
                                       work / "batched", flags)
                load.batching = {"max_batch": plan.max_batch, "max_wait_ms": plan.max_wait_ms}
                load.batched_steps, load.batched_open_steps = batched.steps, batched.open_steps
            except (LoadError, RuntimeError, OSError) as exc:  # the unbatched figures stand; say why no comparison
                first = str(exc).splitlines()[0][:300]
                result.warnings.append(f"dynamic batching not compared: {first}")
                self.say(f"  dynamic batching not compared: {first}")
        result.load = load
        result.capacity = self.capacity_of(load, profile, budget)
        result.warnings += load_warnings(load)
        peak = max(load.steps + load.open_steps, key=lambda s: s.throughput_rps)
        failures = sum(s.failures for s in load.steps + load.open_steps)
        self.say(f"  peak {peak.throughput_rps:.0f} req/s, {failures} failures; "
                 f"under {budget:g} ms p99: {_rps(result.capacity.max_rps_under_budget)}")

    def _sweeps(self, spec, spec_path, server_cores, loadgen_cores, target, requests, rules, work, flags):
        from mcbench.bench.load import Endpoint, run_load
        from mcbench.bench.server import serve_in_subprocess

        plan = self.config.load
        with serve_in_subprocess(spec_path, server_cores, extra=flags) as server:
            load = run_load(
                Endpoint(server.url, spec.name), requests, list(plan.users), plan.open_rates, rules,
                loadgen_cores=loadgen_cores, server_cores=server_cores, server_threads=target.threads or 1,
                work_dir=work / "load", workers=plan.locust_workers, say=self.say,
            )
        load.server_dispatch, load.server_model_ms = server.dispatch, server.model_ms
        return load

    def capacity_of(self, load, profile: Profile | None, budget: float):
        from mcbench.reports.capacity import capacity

        plan = self.config.load
        target_rps = profile.target_rps if profile and profile.target_rps else plan.target_rps
        cost = profile.cost_per_hour if profile and profile.cost_per_hour is not None else plan.cost_per_hour
        return capacity(load, budget, target_rps, cost)


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


def _rps(value: float | None) -> str:
    return "no step held it" if value is None else f"{value:.0f} req/s"


def load_requests(workload: Workload, outputs, count: int = 8):
    """A few evaluation inputs to send in turn, with the variant's offline first output for each to check against."""
    import numpy as np

    from mcbench.bench.load import Requests

    samples = workload.eval_samples[:count] or [workload.timing_feeds]
    expected = None
    if outputs is not None and len(workload.eval_samples):
        rows = len(outputs) // len(workload.eval_samples)
        expected = [[np.asarray(outputs[i * rows:(i + 1) * rows])] for i in range(len(samples))]
    return Requests.encode(samples, expected)


def load_warnings(load) -> list[str]:
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


STDERR_LINES_IN_ERROR = 20


def child_error_text(exc: ChildError) -> str:
    """The error a failed child leaves in results and report: what happened, its exit status, its stderr tail."""
    text = f"{exc.kind}: {exc}"
    if exc.kind != "crashed" and exc.exit_status is not None:
        text += f" ({exit_status_text(exc.exit_status)})"
    if exc.stderr_tail:
        tail = "\n".join(exc.stderr_tail.splitlines()[-STDERR_LINES_IN_ERROR:])
        text += f"\n--- last lines of its stderr ---\n{tail}"
    return text


def first_line_of(text: str) -> str:
    return text.splitlines()[0] if text else ""
