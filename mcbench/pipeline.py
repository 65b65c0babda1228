"""The pipeline that joins the stages: build each variant, measure it, load-test it, write results.

One variant's failure is recorded with its error and the run goes on; results.json is rewritten
atomically after every variant, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bench.accuracy import accuracy_of
from bench.environment import environment
from bench.isolate import ChildError, call_in_child
from bench.measure import InProcessResult, measure_in_process
from bench.op_profile import with_comparison
from mcbench.config import ConfigError, RunConfig
from mcbench.workload import Workload, demo_workload, user_workload
from optimizer.artifact import Artifact
from optimizer.hardware import cpu_info, split_cores, usable_cores
from optimizer.passes import PassContext, PassError, apply_passes, check_needs
from optimizer.profiles import Profile, ProfileError, find_profile
from optimizer.recipe_syntax import RecipeError, parse_recipe
from optimizer.recipes import VariantSpec, default_variants, profile_variants, with_batch_sizes
from optimizer.targets import TargetError, skip_reason
from reports.schema import RunResult, VariantResult, save_results

Progress = Callable[[str], None]

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

    def artifacts(self, recipe: tuple[str, ...]) -> Path:
        return self.root / "artifacts" / (safe_name("+".join(recipe)) if recipe else "base")

    def work(self, variant: str) -> Path:
        path = self.root / "work" / variant
        path.mkdir(parents=True, exist_ok=True)
        return path


def new_run_dir(base: Path, model_name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
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
    from optimizer.targets import TargetError, load_factory

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
    from optimizer.graph_stats import fixed_batch_inputs

    fixed = fixed_batch_inputs(artifact.path)
    if fixed:
        return f"input(s) {', '.join(fixed)} have a fixed batch axis: batch size {batch_size} cannot run"
    return None


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
    inputs when no dataset is given), labelled validation data with the demo or a classification --dataset."""
    labelled = config.model is None or (config.dataset is not None and config.task == "classification")
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
    if workload.labels is None or task != "classification":
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
    def __init__(self, config: RunConfig, progress: Progress = print) -> None:
        self.config = config
        self.say = progress
        self._built: dict[tuple[str, ...], Artifact] = {}
        self._manifests: dict[Path, dict] = {}  # variants that share an artifact hash and inspect it once
        self.user_metric = None
        self.profiles: dict[str, Profile] = {}

    def prepare(self) -> tuple[Workload, RunPaths]:
        """Load or train the model before a run folder exists for it, so bad input leaves nothing behind."""
        cfg = self.config
        if cfg.model is None:
            base_dir = cfg.out_dir or new_run_dir(Path("runs"), "digits-cnn")
            paths = RunPaths(base_dir)
            paths.root.mkdir(parents=True, exist_ok=True)
            self.say("training the digits CNN on scikit-learn's bundled digits ...")
            workload = demo_workload(paths.root, cfg.quick)
            self.say(f"  trained in {workload.info['train_seconds']:.1f} s")
            return workload, paths
        stem = cfg.model.rpartition(":")[2] if ":" in cfg.model else Path(cfg.model).stem
        paths = RunPaths(cfg.out_dir or new_run_dir(Path("runs"), safe_name(stem)))
        paths.root.mkdir(parents=True, exist_ok=True)
        try:
            workload = user_workload(cfg.model, cfg.inputs, paths.root / "source", cfg.weights, cfg.trust_model,
                                     cfg.dataset)
        except BaseException:
            shutil.rmtree(paths.root, ignore_errors=True)  # bad input leaves nothing behind
            raise
        return workload, paths

    def run(self) -> tuple[RunResult, RunPaths]:
        specs = select_variants(self.variant_matrix(), self.config.variants)
        check_data_needs(specs, workload_data(self.config))
        self.user_metric = load_user_metric(self.config.metric)
        workload, paths = self.prepare()
        env = environment()
        run = RunResult(
            run_id=paths.root.name,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            model=workload.info,
            config=self.config.to_dict(),
            environment=env,
            variants=[],
            baseline=next((s.name for s in specs if s.baseline), None),
        )
        if workload.dataset is None:
            run.warnings.append("no dataset: accuracy is not measured; fidelity to the baseline uses generated inputs")
        baseline_outputs = None
        for index, spec in enumerate(specs, start=1):
            self.say(f"[{index}/{len(specs)}] {spec.name}")
            result, outputs = self.run_variant(spec, workload, paths, baseline_outputs)
            if spec.baseline and outputs is not None:
                baseline_outputs = outputs
                result.accuracy = self.accuracy(result, outputs, outputs, workload)
            run.variants.append(result)
            save_results(run, paths.results)
        if baseline_outputs is None:
            run.warnings.append("the baseline variant failed: fidelity to FP32 could not be measured")
        compare_op_profiles(run.variants)
        save_results(run, paths.results)
        return run, paths

    def variant_matrix(self) -> list[VariantSpec]:
        """The default variants, or the FP32 baseline plus each --profile's matrix, names prefixed by profile."""
        from_torch = self.config.from_torch
        if not self.config.profiles:
            return default_variants(from_torch)
        specs = [s for s in default_variants(from_torch) if s.baseline]
        for name in self.config.profiles:
            try:
                profile = find_profile(name)
            except ProfileError as exc:
                raise ConfigError(str(exc)) from exc
            self.profiles[profile.name] = profile
            cpu_mismatch = hardware_mismatch(profile)
            for s in with_batch_sizes(profile_variants(profile, from_torch), profile.batch_sizes):
                skip = cpu_mismatch if s.target.device == "cpu" else None
                specs.append(replace(s, name=f"{profile.name}:{s.name}", skip=skip))
        return specs

    def run_variant(
        self, spec: VariantSpec, workload: Workload, paths: RunPaths, baseline_outputs
    ) -> tuple[VariantResult, object]:
        result = VariantResult(spec.name, spec.target.runtime, list(spec.recipe), status="failed",
                               profile=spec.profile)
        try:
            artifact = self.build(spec, workload, paths)
            if artifact.path not in self._manifests:
                self._manifests[artifact.path] = artifact.manifest()
            result.artifact = dict(self._manifests[artifact.path])
            target = spec.target if spec.target.threads else spec.target.with_threads(len(usable_cores()))
            result.settings = {"in_process": target.to_dict(), "batch_size": spec.batch_size}
            reason = spec.skip or skip_reason(target) or batch_skip_reason(artifact, spec.batch_size)
            if reason:
                result.status, result.error = "skipped", reason
                self.say(f"  compiled, not measured: {reason}")
                return result, None
            measured = self.measure(spec, artifact, target, workload)
        except (PassError, TargetError, ChildError, ValueError, OSError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            self.say(f"  failed: {result.error}")
            return result, None
        result.latency = measured.latency
        result.op_profile = measured.op_profile
        if not measured.settled:
            result.warnings.append(
                f"in-process median did not settle within {self.config.timing.max_seconds:.0f} s "
                f"(CV {measured.latency.cv:.0%}): the machine is noisy"
            )
        if not spec.baseline:
            result.accuracy = self.accuracy(result, measured.outputs, baseline_outputs, workload)
        result.status = "ok"
        self.say(
            f"  in-process p50 {measured.latency.p50_ms:.3f} ms, p99 {measured.latency.p99_ms:.3f} ms "
            f"(n={measured.latency.count})"
        )
        if self.config.load is not None and spec.batch_size > 1:
            result.warnings.append(f"in-process figures are for batches of {spec.batch_size}; "
                                   "the HTTP load test runs at batch 1 and is kept to the batch-1 variant")
        elif self.config.load is not None:
            self.load_test(spec, artifact, workload, paths, result)
        return result, measured.outputs

    def accuracy(self, result: VariantResult, outputs, baseline, workload: Workload):
        """Task metrics and fidelity; a user metric that raises becomes a warning, not a lost variant."""
        task = self.config.task
        try:
            return accuracy_of(outputs, baseline, workload.labels, workload.dataset, task, self.user_metric)
        except Exception as exc:
            if self.user_metric is None:
                raise
            result.warnings.append(f"--metric {self.config.metric} failed: {type(exc).__name__}: {exc}")
            return accuracy_of(outputs, baseline, workload.labels, workload.dataset, task)

    def build(self, spec: VariantSpec, workload: Workload, paths: RunPaths) -> Artifact:
        """Apply the recipe's passes, reusing any prefix of it already built in this run."""
        artifact = workload.base
        for i in range(1, len(spec.recipe) + 1):
            prefix = spec.recipe[:i]
            if prefix not in self._built:
                started = time.perf_counter()
                ctx = PassContext(workload.calibration, workload.calibration_source,
                                  validation=workload_validation(workload, self.config.task))
                self._built[prefix] = apply_passes(artifact, prefix[-1:], ctx, paths.artifacts(prefix))
                for message in ctx.messages:
                    self.say(f"  {message}")
                self.say(f"  built {prefix[-1]} in {time.perf_counter() - started:.1f} s")
            artifact = self._built[prefix]
        return artifact

    def measure(self, spec: VariantSpec, artifact: Artifact, target, workload: Workload) -> InProcessResult:
        self.say(f"  measuring accuracy on {len(workload.eval_samples)} samples and in-process latency ...")
        return call_in_child(
            measure_in_process,
            artifact.to_dict(),
            target.to_dict(),
            workload.eval_samples,
            workload.timing_feeds,
            self.config.timing,
            spec.batch_size,
            timeout_s=MEASURE_TIMEOUT_S,
        )

    def load_test(
        self, spec: VariantSpec, artifact: Artifact, workload: Workload, paths: RunPaths, result: VariantResult
    ) -> None:
        """Serve the variant in its own process on the server cores; drive it with Locust on the others."""
        from bench.load import run_load
        from bench.server import serve_in_subprocess

        plan = self.config.load
        server_cores, loadgen_cores = load_cores(self.profiles.get(spec.profile or ""))
        target = spec.target.with_threads(len(server_cores))
        result.settings["server"] = {**target.to_dict(), "cores": server_cores}
        work = paths.work(safe_name(spec.name))
        spec_path = work / "server.json"
        server_spec = {"name": spec.name, "artifact": artifact.to_dict(), "target": target.to_dict()}
        spec_path.write_text(json.dumps(server_spec))
        self.say(f"  load test: {'-'.join(map(str, plan.users))} users, {plan.step_seconds:.0f} s a step ...")
        try:
            with serve_in_subprocess(spec_path, server_cores) as server:
                load = run_load(
                    server.url, spec.name, workload.timing_feeds, plan.steps(),
                    loadgen_cores=loadgen_cores, server_cores=server_cores,
                    server_threads=target.threads or 1, work_dir=work, warmup_s=plan.warmup_s,
                )
        except (RuntimeError, OSError) as exc:
            result.status = "failed"
            result.error = f"load test: {type(exc).__name__}: {exc}"
            self.say(f"  failed: {result.error}")
            return
        result.load = load
        if load.cores_shared:
            result.warnings.append("server and load generator shared CPU cores: HTTP figures are pessimistic")
        if load.loadgen_cpu_percent is not None and load.loadgen_cpu_percent > 90:
            result.warnings.append(
                f"load generator at {load.loadgen_cpu_percent:.0f}% CPU: it may be the bottleneck, not the server"
            )
        peak = max(load.steps, key=lambda s: s.throughput_rps)
        failures = sum(s.failures for s in load.steps)
        self.say(f"  peak {peak.throughput_rps:.0f} req/s at {peak.users} users, {failures} failures")
