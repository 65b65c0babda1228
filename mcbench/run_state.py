"""What flows between the stages of a run: one RunState, made once the model is loaded, that every stage reads
and adds to; the run folder's paths; and the one way a stage saves results.json.

The stages (mcbench/pipeline.py puts them in order) are plain functions of the state. What a stage produces for
the reader goes into `state.run` (results.json: the variants, their figures and records, the warnings, the search
record); what it produces for a later stage goes into the state's other fields (the candidates measured here,
the baseline's outputs, the task `auto` resolved to, the prices seen so far).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mcbench.base.files import FileError
from mcbench.bench.roles import OutputRole
from mcbench.config import RunConfig
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.build import Builder
from mcbench.optimizer.recipes import VariantSpec
from mcbench.plan import Plan
from mcbench.reports.schema import RunResult, VariantResult, save_results
from mcbench.runguard import OutputError, ResultsWriteError
from mcbench.search import Prices, TimeBudget
from mcbench.workload import Workload

Say = Callable[[str], None]
StageHook = Callable[[str, int, int, str, TimeBudget], None]  # stage, index, count, candidate, budget


def safe_name(name: str) -> str:
    """A folder name from a model name: letters, digits, '.', '_' and '-' only, so no path can be steered."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


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
        """The baseline's outputs, every one ("0", "1", ... in the model's output order), kept so a resumed run can
        still measure fidelity to them."""
        return self.root / "work" / "baseline-outputs.npz"

    @property
    def old_baseline_outputs(self) -> Path:
        """Where a run before the .npz kept its baseline's first output alone; --resume still reads it."""
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


@dataclass
class Candidate:
    """A variant measured in this run: what timing, load-testing and serving it again need."""

    spec: VariantSpec
    artifact: Artifact
    outputs: object  # its first output on the evaluation samples, batch first (a load test checks answers on them)
    more: list | None = None  # its second and later outputs, likewise
    batch_axes: list[int | None] | None = None  # each output's batch axis in the model's layout (None: 0 for all)

    @property
    def every_output(self) -> list | None:
        """Its outputs on the evaluation samples, first to last; None where they were not kept."""
        return None if self.outputs is None else [self.outputs, *(self.more or [])]


@dataclass
class Reference:
    """The baseline's outputs, which every candidate's fidelity is measured against, and what they mean."""

    outputs: object | None = None  # the first output on the evaluation samples; None until (unless) measured or kept
    more: list | None = None  # its second and later outputs (per-output fidelity)
    roles: list[OutputRole] | None = None  # what each output means, inferred on the baseline's outputs or declared


@dataclass
class RunState:
    """One run, as the stages see it: what it was asked (config, plan), what it works on (workload, builder, paths),
    what it has found (run: results.json as it grows; candidates, reference, task) and what it may still spend."""

    config: RunConfig
    paths: RunPaths
    workload: Workload
    plan: Plan  # the candidates in screening order and the hardware profiles they name
    run: RunResult
    builder: Builder
    budget: TimeBudget  # the search's wall time, counted from the baseline's measurement
    say: Say
    on_stage: StageHook
    kept: dict[str, VariantResult] = field(default_factory=dict)  # an earlier run's finished variants (--resume)
    user_metric: Callable | None = None  # --metric, resolved before any work
    task: str | None = None  # the metrics' task; None until `auto` resolves it on the baseline's outputs
    reference: Reference = field(default_factory=Reference)
    candidates: dict[str, Candidate] = field(default_factory=dict)  # measured in this run, by name
    prices: Prices = field(default_factory=Prices)  # what screening a candidate costs, from what the run has seen


def save(state: RunState) -> None:
    """results.json, atomically; a failed write says which file and why, and leaves the last good one."""
    run, path = state.run, state.paths.results
    try:
        save_results(run, path)
    except (OSError, FileError) as exc:  # FileError: the path turned into something not a regular file
        raise ResultsWriteError(
            f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}; it still holds the results as last saved "
            f"({len(run.variants) - 1} variant(s))"
        ) from None


def going(state: RunState) -> list[VariantResult]:
    """The candidates measured in this run (not kept from an earlier one) that are still going."""
    return [v for v in state.run.variants if v.status == "ok" and v.name in state.candidates
            and v.search is not None and v.search.get("stopped") is None and v.latency is not None]
