"""The page of several machines' runs of one model (`reports.merge`): per machine and profile the recommendation and
its capacity side by side, the capacity and variant tables with a machine column, each machine's load steps, and
what differs between the machines. Every figure comes from the machine's own RunResult through the same functions
as the single-run page (`page.py`), so a variant's speedup is against its own machine's baseline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mcbench.reports.decide import THIS_MACHINE, Recommendation, profile_names, recommendations
from mcbench.reports.decision import objective_sentence
from mcbench.reports.details import WarningItem, all_warnings
from mcbench.reports.formatting import KeyValue, flattened_items, format_created, format_value, inputs_text
from mcbench.reports.load_view import LoadTable, load_tables
from mcbench.reports.merge import MachineRun, MultiRun, model_sha256
from mcbench.reports.page import concurrency_text, plural
from mcbench.reports.quality import QualityMetric, quality_metric
from mcbench.reports.schema import SCHEMA_VERSION
from mcbench.reports.sections import (
    CapacityRow,
    ProfileCard,
    TableRow,
    budget_sentence,
    capacity_table,
    profile_cards,
    profile_label,
    table_rows,
)

NO_PROFILE = "(none)"  # the profile column of a run that named no hardware profile
DIFFERS = "differs by machine (see Machines)"


@dataclass(frozen=True)
class MergedHeader:
    title: str
    machines: str  # "2: xeon, gpu"
    model_sha256: str
    created: str
    mode: str
    baseline: str
    concurrency: str
    counts: str
    model: list[KeyValue]  # the model as the first machine recorded it; keys that differ say so
    config: list[KeyValue]  # the shared config; the keys allowed to differ by machine say so
    schema_version: str
    warning_count: str


@dataclass(frozen=True)
class MachineRecommendation:
    heading: str  # "xeon" or "xeon · xeon-avx512-vnni"
    machine: str  # what the run recorded about the machine: CPU model and cores
    recommendation: Recommendation


@dataclass(frozen=True)
class MachineCapacityRow:
    machine: str
    row: CapacityRow


@dataclass(frozen=True)
class MachineTableRow:
    machine: str
    row: TableRow


@dataclass(frozen=True)
class FactRow:
    key: str
    values: list[str]  # one a machine, in the order given
    differs: bool


@dataclass(frozen=True)
class MergedView:
    header: MergedHeader
    labels: list[str]
    metric: QualityMetric
    budget: str
    objective: str  # which objective decided, in words (reports.decision)
    recommendations: list[MachineRecommendation]
    cards: list[ProfileCard]  # one a machine and profile, side by side
    capacity: list[MachineCapacityRow]
    capacity_missing: str  # "xeon: a, b; gpu: c": ok variants with no capacity record
    table: list[MachineTableRow]
    load_tables: list[LoadTable]
    differences: list[FactRow]
    same: list[FactRow]
    warnings: list[WarningItem]


def heading(machine: MachineRun, profile: str | None) -> str:
    return machine.label if not profile or profile == THIS_MACHINE else f"{machine.label} · {profile}"


def _flat(data: dict) -> dict[str, str]:
    return {kv.key: kv.value for kv in flattened_items(data)}


def _keys(dicts: list[dict[str, str]]) -> list[str]:
    return list(dict.fromkeys(k for d in dicts for k in d))


def _rows(prefix: str, dicts: list[dict[str, str]], only_differing: bool = False) -> list[FactRow]:
    rows = []
    for key in _keys(dicts):
        values = [d.get(key, "(absent)") for d in dicts]
        differs = len(set(values)) > 1
        if differs or not only_differing:
            rows.append(FactRow(prefix + key, values, differs))
    return rows


def differing_keys(dicts: list[dict[str, str]]) -> set[str]:
    return {row.key for row in _rows("", dicts, only_differing=True)}


def machine_facts(multi: MultiRun) -> list[FactRow]:
    """Everything the runs recorded about where and how they ran, one column a machine: results file, run,
    profiles, the environment (CPU, ISA, cores, platform, library versions), and the config and model keys that
    differ (paths on that machine, the profiles, a cost per hour)."""
    ms = multi.machines
    own = [
        ("results file", [m.source for m in ms]),
        ("run", [m.run.run_id for m in ms]),
        ("created", [format_created(m.run.created) for m in ms]),
        ("profiles", [", ".join(p or NO_PROFILE for p in profile_names(m.run)) for m in ms]),
    ]
    rows = [FactRow(key, values, len(set(values)) > 1) for key, values in own]
    rows += _rows("", [_flat(m.run.environment) for m in ms])
    rows += _rows("config.", [_flat(m.run.config) for m in ms], only_differing=True)
    rows += _rows("model.", [_flat(m.run.model) for m in ms], only_differing=True)
    return rows


def _model_items(multi: MultiRun) -> list[KeyValue]:
    """The model's facts as the single page shows them (inputs as shapes), from the first machine; a fact the
    machines recorded differently (the file's path on each) says so."""
    def text(key: str, value: object) -> str:
        return inputs_text(value) if key == "inputs" else format_value(value)

    per_machine = [{k: text(k, v) for k, v in m.run.model.items()} for m in multi.machines]
    differing = differing_keys(per_machine)
    return [KeyValue(k, DIFFERS if k in differing else v) for k, v in per_machine[0].items()]


def _config_items(multi: MultiRun) -> list[KeyValue]:
    per_machine = [_flat(m.run.config) for m in multi.machines]
    differing = differing_keys(per_machine)
    return [KeyValue(k, DIFFERS if k in differing else v) for k, v in per_machine[0].items()]


def merged_header(multi: MultiRun) -> MergedHeader:
    first, ms = multi.first, multi.machines
    records = multi.records()
    ok = sum(1 for r in records if r.variant.status == "ok")
    created = sorted(m.run.created for m in ms)
    sha = model_sha256(first) or "n/a"
    warnings = len(multi.warnings) + sum(len(all_warnings(m.run)) for m in ms)
    return MergedHeader(
        title=str(first.model.get("name") or "model"),
        machines=f"{len(ms)}: {', '.join(multi.labels())}",
        model_sha256=sha,
        created=(format_created(created[0]) if created[0] == created[-1]
                 else f"{format_created(created[0])} to {format_created(created[-1])}"),
        mode="quick" if first.config.get("quick") else "default",
        baseline=first.baseline or "(none)",
        concurrency=concurrency_text(first.config),
        counts=f"{ok} of {len(records)} variants ok, over {len(ms)} machines",
        model=_model_items(multi),
        config=_config_items(multi),
        schema_version=str(SCHEMA_VERSION),
        warning_count=plural(warnings, "warning"),
    )


def merged_warnings(multi: MultiRun) -> list[WarningItem]:
    items = [WarningItem("machines", w) for w in multi.warnings]
    for m in multi.machines:
        items += [WarningItem(m.label if w.scope == "run" else f"{m.label}: {w.scope}", w.text)
                  for w in all_warnings(m.run)]
    return items


def _profile_column(label: str) -> str:
    return NO_PROFILE if label == profile_label(None) else label


def merged_view(multi: MultiRun) -> MergedView:
    """Everything the page of several machines shows, computed once, machine by machine."""
    recs_out, cards, capacity, missing, table, loads = [], [], [], [], [], []
    for m in multi.machines:
        run = m.run
        recs = recommendations(run)
        recs_out += [MachineRecommendation(heading(m, r.profile), m.description, r) for r in recs]
        cards += [dataclasses.replace(card, name=heading(m, rec.profile), machine=m.description)
                  for card, rec in zip(profile_cards(run, recs), recs, strict=True)]
        cap = capacity_table(run, {r.variant for r in recs if r.variant})
        capacity += [MachineCapacityRow(m.label, dataclasses.replace(row, profile=_profile_column(row.profile)))
                     for row in cap.rows]
        if cap.missing:
            missing.append(f"{m.label}: {', '.join(cap.missing)}")
        table += [MachineTableRow(m.label, dataclasses.replace(t, profile=_profile_column(t.profile)))
                  for t in table_rows(run)]
        loads += [dataclasses.replace(t, name=f"{m.label} · {t.name}") for t in load_tables(run)]
    facts = machine_facts(multi)
    return MergedView(
        header=merged_header(multi),
        labels=multi.labels(),
        metric=quality_metric(multi.first),
        budget=budget_sentence(multi.first),
        objective=objective_sentence(multi.first),
        recommendations=recs_out,
        cards=cards,
        capacity=capacity,
        capacity_missing="; ".join(missing),
        table=table,
        load_tables=loads,
        differences=[r for r in facts if r.differs],
        same=[r for r in facts if not r.differs],
        warnings=merged_warnings(multi),
    )
