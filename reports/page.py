"""The whole report page as one view object: header, tables, charts, details, warnings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcbench.reports.decide import Recommendation, recommendations
from mcbench.reports.decision import frontier_names, objective_of, objective_sentence
from mcbench.reports.details import (
    FailedVariant,
    VariantDetail,
    WarningItem,
    all_warnings,
    failed_variants,
    variant_details,
)
from mcbench.reports.formatting import KeyValue, flattened_items, format_created, format_value, inputs_text
from mcbench.reports.load_view import LoadTable, load_tables
from mcbench.reports.plots import ChartsBlock, charts_block
from mcbench.reports.quality import QualityMetric, quality_metric
from mcbench.reports.schema import RunResult, VariantResult
from mcbench.reports.sections import (
    CapacityTable,
    ClassDelta,
    CompressionFacts,
    ConfirmationBlock,
    ProfileCard,
    SearchRow,
    TableRow,
    budget_sentence,
    capacity_table,
    class_deltas,
    compression_facts,
    confirmation_block,
    profile_cards,
    search_rows,
    search_summary,
    several_profiles,
    table_rows,
)
from mcbench.reports.serving_view import ServingTable, serving_tables

# ---------------------------------------------------------------- the whole page


@dataclass(frozen=True)
class Header:
    title: str
    run_id: str
    created: str
    mode: str
    baseline: str
    concurrency: str
    counts: str
    model: list[KeyValue]
    config: list[KeyValue]
    schema_version: str
    warning_count: str  # "3 warnings"; empty where there are none


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}" if count else ""


def concurrency_text(config: Mapping[str, Any]) -> str:
    load = config.get("load")
    users = load.get("users") if isinstance(load, Mapping) else config.get("concurrency")
    if not users:
        return "no HTTP load test"
    return ", ".join(str(u) for u in users) + " users"


def header(run: RunResult) -> Header:
    model = dict(run.model)
    model_items = [KeyValue(k, inputs_text(v) if k == "inputs" else format_value(v)) for k, v in model.items()]
    ok = sum(1 for v in run.variants if v.status == "ok")
    return Header(
        title=str(model.get("name") or "model"),
        run_id=run.run_id,
        created=format_created(run.created),
        mode="quick" if run.config.get("quick") else "default",
        baseline=run.baseline or "(none)",
        concurrency=concurrency_text(run.config),
        counts=f"{ok} of {len(run.variants)} variants ok",
        model=model_items,
        config=flattened_items(run.config),
        schema_version=str(run.schema_version),
        warning_count=plural(len(all_warnings(run)), "warning"),
    )


@dataclass(frozen=True)
class DetailExtras:
    """What a variant's details add to the generic record: per-class deltas and what compression did."""

    class_deltas: list[ClassDelta]
    compression: CompressionFacts
    op_profile: list[KeyValue]  # where the time goes by operator type, as the run recorded it


@dataclass(frozen=True)
class ReportView:
    header: Header
    metric: QualityMetric
    frontier: list[str]
    budget: str
    objective: str  # which objective decided, in words
    objective_label: str
    recommendations: list[Recommendation]
    profiles: list[ProfileCard]  # shown side by side where the run named several profiles
    several_profiles: bool
    table: list[TableRow]
    charts: ChartsBlock
    capacity: CapacityTable
    load_tables: list[LoadTable]
    failed: list[FailedVariant]
    details: list[VariantDetail]
    extras: dict[str, DetailExtras]
    environment: list[KeyValue]
    warnings: list[WarningItem] = field(default_factory=list)
    search: list[SearchRow] = field(default_factory=list)
    search_summary: str = ""
    confirmation: ConfirmationBlock | None = None
    serving: list[ServingTable] = field(default_factory=list)


def detail_extras(run: RunResult, v: VariantResult) -> DetailExtras:
    op_profile = flattened_items(v.op_profile) if isinstance(v.op_profile, Mapping) else []
    return DetailExtras(class_deltas(run, v), compression_facts(v), op_profile)


def report_view(run: RunResult) -> ReportView:
    """Everything the HTML page shows, computed once."""
    recs = recommendations(run)
    return ReportView(
        header=header(run),
        metric=quality_metric(run),
        frontier=[v.name for v in run.variants if v.name in frontier_names(run)],
        budget=budget_sentence(run),
        objective=objective_sentence(run),
        objective_label=objective_of(run).label,
        recommendations=recs,
        profiles=profile_cards(run, recs),
        several_profiles=several_profiles(run),
        table=table_rows(run),
        charts=charts_block(run),
        capacity=capacity_table(run, {r.variant for r in recs if r.variant}),
        load_tables=load_tables(run),
        extras={v.name: detail_extras(run, v) for v in run.variants},
        failed=failed_variants(run),
        details=variant_details(run),
        environment=flattened_items(run.environment),
        warnings=all_warnings(run),
        search=search_rows(run),
        search_summary=search_summary(run),
        confirmation=confirmation_block(run),
        serving=serving_tables(run),
    )

