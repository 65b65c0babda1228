"""Several machines' runs of one model in one report: `mcbench report A/results.json B/results.json ...`.

A capacity planner runs the same `mcbench run` on each hardware type; this puts the runs side by side. Runs
merge only where they measured the same thing, and a refusal is one line naming the file and what differs:

- the same model: the SHA-256 of the baseline's artifact (the model as given, before any pass), and the same
  model inputs (names, shapes, so the batch size, dtypes, value ranges) as the runs resolved them;
- the same config: every key `mcbench run` recorded, except what belongs to the machine (MAY_DIFFER: the
  model's and weights' paths, the profiles, the cache folder, a profile-less run's cost per replica-hour, the
  number of Locust workers); dataset, text and labels files are compared by file name, not by folder;
- the same quality metric and budget, as the report decides it from the results.

The machine, its profiles and the runtime versions may differ; the report shows those differences. Nothing is
renamed or recomputed: each machine's figures (recommendation, speedups against its own baseline, capacity)
come from its own RunResult, and every variant record is labelled with its machine (`records()`).
Standard library only, like the rest of `reports`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError
from mcbench.base.text import clip
from mcbench.reports.decide import THIS_MACHINE, profile_names
from mcbench.reports.formatting import NA, finite, format_ms, format_rps, inputs_text
from mcbench.reports.quality import quality_metric
from mcbench.reports.schema import RunResult, VariantResult, load_results

# Dotted config keys that belong to the machine, not to the question the run answers.
MAY_DIFFER = frozenset({
    "model",  # a path on that machine (or the demo's None); the model's SHA-256 decides whether it is the same
    "weights",  # likewise: a factory's weights are the baseline artifact whose hash is compared
    "trust_model",
    "inputs",  # the --input overrides; the inputs they resolved to are compared (model inputs)
    "profiles",
    "cache_dir",
    "load.cost_per_hour",  # each machine costs what it costs
    "load.locust_workers",  # how the load generator was spread on that machine
})
BY_FILE_NAME = frozenset({"dataset", "text_file", "labels_file"})  # the same data may lie in another folder
SHA_SHOWN = 12  # hex digits of a hash in an error message


class MergeError(UserError):
    """Results that cannot be shown as one report; the message names the file and what differs (exit code 2)."""


@dataclass(frozen=True)
class MachineRun:
    """One machine's run: its label in the report, the results file it came from, and the run as recorded."""

    label: str
    source: str
    run: RunResult

    @property
    def description(self) -> str:
        """'AMD EPYC 7B12, 64 logical cores': what the run recorded about the machine."""
        env = self.run.environment
        cores = env.get("logical_cores")
        parts = [str(env.get("cpu_model") or "unknown CPU")]
        if isinstance(cores, int) and not isinstance(cores, bool):
            parts.append(f"{cores} logical core{'' if cores == 1 else 's'}")
        return ", ".join(parts)


@dataclass(frozen=True)
class MachineVariant:
    """A variant×target record labelled with the machine that measured it: the same variant name from two
    machines is two records."""

    machine: str
    profile: str | None
    variant: VariantResult


@dataclass(frozen=True)
class MultiRun:
    """Runs of one model and one config on several machines, in the order given."""

    machines: list[MachineRun]
    warnings: list[str] = field(default_factory=list)  # things that differ and change how to read the figures

    @property
    def first(self) -> RunResult:
        return self.machines[0].run

    def records(self) -> list[MachineVariant]:
        return [MachineVariant(m.label, v.profile, v) for m in self.machines for v in m.run.variants]

    def labels(self) -> list[str]:
        return [m.label for m in self.machines]


# ---------------------------------------------------------------- what identifies the model and the config


def model_sha256(run: RunResult) -> str | None:
    """The SHA-256 of the model as given: the baseline's artifact, else a variant built with no pass."""
    ordered = sorted(run.variants, key=lambda v: v.name != run.baseline)  # the baseline first
    for v in ordered:
        sha = v.artifact.get("sha256") if isinstance(v.artifact, Mapping) else None
        if sha and (v.name == run.baseline or not v.recipe):
            return str(sha)
    return None


def model_inputs(run: RunResult) -> Any:
    return run.model.get("inputs")


def _file_name(value: Any) -> Any:
    return Path(value).name if isinstance(value, str) and value else value


def config_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first config key (dotted) whose values differ, with both values; None where the configs agree.

    Keys in MAY_DIFFER are skipped, file keys compare by file name, and a key one run did not record counts as
    null (an older mcbench wrote fewer keys)."""
    if path in MAY_DIFFER:
        return None
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in dict.fromkeys([*a, *b]):
            found = config_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if path in BY_FILE_NAME:
        a, b = _file_name(a), _file_name(b)
    return None if a == b else (path, a, b)


def _shown(value: Any, limit: int = 60) -> str:
    """A config value as results.json records it, shortened to one readable piece."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return clip(text, limit)


def _short_sha(sha: str) -> str:
    return sha[:SHA_SHOWN] + "…" if len(sha) > SHA_SHOWN else sha


def same_run(a: RunResult, b: RunResult) -> bool:
    """One run given twice (or a copy of it): same id, same start, same machine."""
    return (a.run_id, a.created, a.environment) == (b.run_id, b.created, b.environment)


def refusal(first: tuple[str, RunResult], other: tuple[str, RunResult]) -> str | None:
    """Why `other` cannot be merged with `first`, in words (what differs, its value here and there); None if it can."""
    (a_source, a), (_, b) = first, other
    if same_run(a, b):
        return f"it is the same run as {a_source} (run {b.run_id}): give each machine's results once"
    sha_a, sha_b = model_sha256(a), model_sha256(b)
    if sha_a != sha_b:
        return f"model sha256 differs from {a_source} ({_short_sha(sha_b)} here, {_short_sha(sha_a)} there)"
    if model_inputs(a) != model_inputs(b):
        return (f"model inputs differ from {a_source} ({inputs_text(model_inputs(b))} here, "
                f"{inputs_text(model_inputs(a))} there)")
    found = config_difference(a.config, b.config)
    if found is not None:
        key, value_a, value_b = found
        return f"config key {key} differs from {a_source} ({_shown(value_b)} here, {_shown(value_a)} there)"
    qa, qb = quality_metric(a), quality_metric(b)
    if (qa.key, qa.budget_text()) != (qb.key, qb.budget_text()):
        return (f"quality metric differs from {a_source} ({qb.label}, {qb.budget_text()} here; "
                f"{qa.label}, {qa.budget_text()} there)")
    return None


# ---------------------------------------------------------------- labels and warnings


def machine_labels(sources: Sequence[str]) -> list[str]:
    """Each machine's name in the report: the folder that holds its results file (the run's --out), with as many
    parent folders as it takes to tell them apart; the file's name as well where two share a folder."""
    folders = [Path(s).resolve().parent.parts for s in sources]
    for depth in range(1, max(len(f) for f in folders) + 1):
        labels = ["/".join(f[-depth:]).lstrip("/") or "/" for f in folders]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{Path(s).resolve().parent.name or '/'} ({Path(s).name})" for s in sources]


def _profile_text(machine: MachineRun, profile: str | None) -> str:
    return machine.label if not profile else f"{machine.label} ({profile})"


def capacity_warnings(machines: Sequence[MachineRun]) -> list[str]:
    """Where the machines' capacity figures answer different questions: another p99 budget or target load (a
    hardware profile sets its own), so their req/s, replicas and cost are not like for like."""
    budgets: dict[str, list[str]] = {}
    targets: dict[str, list[str]] = {}
    for m in machines:
        profiled = profile_names(m.run) != [THIS_MACHINE]
        for v in m.run.variants:
            cap = v.capacity
            if cap is None or (profiled and v.profile is None):  # a profile run's baseline: the run's own budget
                continue
            where = _profile_text(m, v.profile)
            budget = f"{format_ms(cap.budget_p99_ms)} ms"
            target = f"{format_rps(cap.target_rps)} req/s" if finite(cap.target_rps) is not None else NA
            if where not in budgets.setdefault(budget, []):
                budgets[budget].append(where)
            if where not in targets.setdefault(target, []):
                targets[target].append(where)
    out = []
    for what, found in (("p99 budgets", budgets), ("target loads", targets)):
        if len(found) > 1:
            listed = "; ".join(f"{value} on {', '.join(where)}" for value, where in found.items())
            out.append(f"the {what} differ between the machines ({listed}): their capacity figures are not like "
                       "for like")
    return out


# ---------------------------------------------------------------- merging


def merge_runs(runs: Sequence[tuple[str, RunResult]]) -> MultiRun:
    """Runs of the same model and config from several machines, as one MultiRun; a MergeError names the first
    file that cannot join (and what differs from the first file given)."""
    if len(runs) < 2:
        raise MergeError("merging needs at least two results files")
    for source, run in runs:
        if model_sha256(run) is None:
            raise MergeError(f"cannot merge {source}: it records no model sha256 (its baseline "
                             f"{run.baseline or '(none)'} has no artifact), so it cannot be shown to measure the "
                             "same model as the others")
    for i, (source, run) in enumerate(runs[1:], start=1):
        again = next((e for e in runs[:i] if same_run(e[1], run)), None)
        why = refusal(again or runs[0], (source, run))
        if why is not None:
            raise MergeError(f"cannot merge {source}: {why}")
    labels = machine_labels([source for source, _ in runs])
    machines = [MachineRun(label, source, run) for label, (source, run) in zip(labels, runs, strict=True)]
    return MultiRun(machines, capacity_warnings(machines))


def load_merged(paths: Sequence[Path]) -> MultiRun:
    """Read each results file (a broken one is refused naming it) and merge them."""
    return merge_runs([(str(p), load_results(p)) for p in paths])

