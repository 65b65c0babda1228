"""The capacity planner's sections of the report: capacity per variant and profile, the profile comparison,
the full variant table (every figure, for sorting and for the CSV and Markdown exports), per-class deltas,
and what compression did. Computed here and unit-tested; the template lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcbench.reports.decide import (
    THIS_MACHINE,
    Recommendation,
    profile_names,
    profile_variants,
    recommendations,
    variant_passes,
)
from mcbench.reports.formatting import (
    NA,
    Cell,
    KeyValue,
    finite,
    format_count,
    format_ms,
    format_percent,
    format_rps,
    format_speedup,
    format_value,
    number_cell,
)
from mcbench.reports.quality import quality_metric, shortfall, within_budget
from mcbench.reports.schema import RunResult, VariantResult
from mcbench.reports.summary import SummaryRow, summary_rows


def profile_label(profile: str | None) -> str:
    return profile or "this machine"


def format_money(value: Any) -> str:
    amount = finite(value)
    return NA if amount is None else f"{amount:,.2f}" if abs(amount) >= 0.01 or amount == 0 else f"{amount:.2g}"


def format_points(value: Any) -> str:
    points = finite(value)
    return NA if points is None else f"{points:+.2f}".replace("+0.00", "0.00").replace("-0.00", "0.00")


# ---------------------------------------------------------------- capacity


@dataclass(frozen=True)
class CapacityRow:
    profile: str
    variant: str
    budget_p99: Cell
    max_rps: Cell
    basis: str
    target_rps: Cell
    replicas: Cell
    cost_per_hour: Cell
    cost_per_million: Cell
    is_recommended: bool


@dataclass(frozen=True)
class CapacityTable:
    rows: list[CapacityRow]
    missing: list[str]  # ok variants with no capacity record


def capacity_table(run: RunResult, recommended: set[str] | None = None) -> CapacityTable:
    """Per profile and variant: the most req/s one replica holds under the p99 budget, replicas and cost."""
    recommended = recommended if recommended is not None else {r.variant for r in recommendations(run) if r.variant}
    rows, missing = [], []
    for v in run.variants:
        cap = v.capacity
        if cap is None:
            if v.status == "ok":
                missing.append(v.name)
            continue
        rows.append(CapacityRow(
            profile=profile_label(v.profile), variant=v.name,
            budget_p99=number_cell(cap.budget_p99_ms, format_ms),
            max_rps=number_cell(cap.max_rps_under_budget, format_rps),
            basis=cap.basis or NA,
            target_rps=number_cell(cap.target_rps, format_rps),
            replicas=number_cell(cap.replicas, format_count),
            cost_per_hour=number_cell(cap.cost_per_hour, format_money),
            cost_per_million=number_cell(cap.cost_per_million, format_money),
            is_recommended=v.name in recommended,
        ))
    return CapacityTable(rows, missing)


# ---------------------------------------------------------------- profiles side by side


@dataclass(frozen=True)
class SkipGroup:
    reason: str
    variants: list[str]


def skip_groups(skipped: list[tuple[str, str]]) -> list[SkipGroup]:
    """Skipped or failed variants grouped by their reason, in first-seen order: nine variants skipped for one
    missing CPU feature read as one line, not nine."""
    groups: dict[str, list[str]] = {}
    for name, reason in skipped:
        groups.setdefault(reason, []).append(name)
    return [SkipGroup(reason, names) for reason, names in groups.items()]


@dataclass(frozen=True)
class ProfileCard:
    name: str
    recommendation: Recommendation
    capacity: list[KeyValue]  # the recommended variant's capacity figures, empty where none
    skipped: list[SkipGroup]
    variant_count: int
    machine: str = ""  # in a report of several machines (reports.merge): the machine's CPU and cores


def profile_cards(run: RunResult, recs: list[Recommendation] | None = None) -> list[ProfileCard]:
    """One card per hardware profile: its recommendation, the capacity of that choice, what was skipped and why."""
    cards = []
    for rec in recs if recs is not None else recommendations(run):
        chosen = next((v for v in run.variants if v.name == rec.variant), None)
        cap = chosen.capacity if chosen is not None else None
        facts = [] if cap is None else [
            KeyValue("p99 budget", f"{format_ms(cap.budget_p99_ms)} ms"),
            KeyValue("max req/s per replica under it", format_rps(cap.max_rps_under_budget)),
            KeyValue("target load", f"{format_rps(cap.target_rps)} req/s"),
            KeyValue("replicas", format_count(cap.replicas)),
            KeyValue("cost per hour", format_money(cap.cost_per_hour)),
            KeyValue("cost per million requests", format_money(cap.cost_per_million)),
        ]
        own = [v for v in profile_variants(run, rec.profile) if rec.profile == THIS_MACHINE or v.profile == rec.profile]
        cards.append(ProfileCard(profile_label(rec.profile), rec, facts, skip_groups(list(rec.skipped)), len(own)))
    return cards


def several_profiles(run: RunResult) -> bool:
    return len(profile_names(run)) > 1


# ---------------------------------------------------------------- the full variant table


def _artifact_number(variant: VariantResult, key: str) -> Any:
    value = variant.artifact.get(key)
    if value is None:
        for record in variant_passes(variant):
            if record.get(key) is not None:
                value = record.get(key)
    return value


@dataclass(frozen=True)
class TableRow:
    """A summary row plus the figures a planner sorts by: budget, model size facts, capacity."""

    row: SummaryRow
    profile: str
    drop: Cell  # percentage points below the baseline
    budget: str  # "within" | "over" | "n/a"
    parameters: Cell
    flops: Cell
    sparsity: Cell
    max_rps: Cell
    replicas: Cell
    cost_per_hour: Cell
    cost_per_million: Cell


def table_rows(run: RunResult) -> list[TableRow]:
    metric = quality_metric(run)
    out = []
    for v, row in zip(run.variants, summary_rows(run), strict=True):
        ok = within_budget(run, v, metric) if v.status == "ok" else None
        cap = v.capacity
        out.append(TableRow(
            row=row, profile=profile_label(v.profile),
            drop=number_cell(shortfall(run, v, metric) if metric.percent else None, format_points),
            budget=NA if ok is None else "within" if ok else "over",
            parameters=number_cell(_artifact_number(v, "parameters"), format_count),
            flops=number_cell(_artifact_number(v, "flops"), format_count),
            sparsity=number_cell(_artifact_number(v, "sparsity"), format_percent),
            max_rps=number_cell(cap.max_rps_under_budget if cap else None, format_rps),
            replicas=number_cell(cap.replicas if cap else None, format_count),
            cost_per_hour=number_cell(cap.cost_per_hour if cap else None, format_money),
            cost_per_million=number_cell(cap.cost_per_million if cap else None, format_money),
        ))
    return out


# (heading, the row's text): the columns of the CSV and Markdown exports and of the page's table.
EXPORT_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("variant", lambda t: t.row.name),
    ("profile", lambda t: t.profile),
    ("status", lambda t: t.row.verdict),
    ("runtime", lambda t: t.row.runtime),
    ("recipe", lambda t: t.row.recipe),
    ("baseline", lambda t: "yes" if t.row.is_baseline else ""),
    ("frontier", lambda t: "yes" if t.row.on_frontier else ""),
    ("top1", lambda t: t.row.accuracy),
    ("agreement", lambda t: t.row.agreement),
    ("drop_points", lambda t: t.drop),
    ("accuracy_budget", lambda t: t.budget),
    ("max_abs_diff", lambda t: t.row.max_abs_diff),
    ("p50_ms", lambda t: t.row.p50),
    ("p90_ms", lambda t: t.row.p90),
    ("p99_ms", lambda t: t.row.p99),
    ("samples", lambda t: t.row.samples),
    ("speedup", lambda t: t.row.speedup),
    ("size", lambda t: t.row.size),
    ("parameters", lambda t: t.parameters),
    ("flops", lambda t: t.flops),
    ("sparsity", lambda t: t.sparsity),
    ("peak_rps", lambda t: t.row.peak_rps),
    ("peak_users", lambda t: t.row.peak_users),
    ("p99_at_peak_ms", lambda t: t.row.peak_p99),
    ("http_failures", lambda t: t.row.http_failures),
    ("max_rps_under_budget", lambda t: t.max_rps),
    ("replicas", lambda t: t.replicas),
    ("cost_per_hour", lambda t: t.cost_per_hour),
    ("cost_per_million", lambda t: t.cost_per_million),
    ("error", lambda t: t.row.error),
)


# ---------------------------------------------------------------- per-variant details


@dataclass(frozen=True)
class ClassDelta:
    label: str
    baseline: str
    variant: str
    delta: str  # percentage points, signed
    worse: bool


def _label_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def class_deltas(run: RunResult, variant: VariantResult) -> list[ClassDelta]:
    """Per-class top-1 of the variant against the FP32 baseline, in label order; empty where either lacks it."""
    base = next((v for v in run.variants if v.name == run.baseline), None)
    mine = variant.accuracy.per_class if variant.accuracy else {}
    theirs = base.accuracy.per_class if base is not None and base.accuracy else {}
    if not mine or variant.name == run.baseline:
        return []
    out = []
    for label in sorted(mine, key=_label_key):
        a, b = finite(mine[label]), finite(theirs.get(label))
        delta = None if a is None or b is None else round((a - b) * 100, 9)
        out.append(ClassDelta(label, format_percent(b), format_percent(a), format_points(delta),
                              delta is not None and delta < 0))
    return out


@dataclass(frozen=True)
class CompressionFacts:
    pruning: list[KeyValue]  # what the prune passes recorded they removed
    layers_in_float: list[str]


def _record_items(record: Mapping[str, Any], skip: tuple[str, ...] = ()) -> list[KeyValue]:
    return [KeyValue(str(k), format_value(v)) for k, v in record.items() if k not in ("pass", "name", *skip)]


def compression_facts(variant: VariantResult) -> CompressionFacts:
    records = variant_passes(variant)
    pruning: list[KeyValue] = []
    kept: list[str] = []
    for r in records:
        name = str(r.get("pass") or r.get("name") or "")
        if name.startswith("prune"):
            pruning += _record_items(r)
        kept += [str(x) for x in r.get("layers_in_float") or [] if str(x) not in kept]
    return CompressionFacts(pruning, kept)


def budget_sentence(run: RunResult) -> str:
    metric = quality_metric(run)
    return f"Quality budget: {metric.label}, {metric.budget_text()} (baseline {run.baseline or '(none)'})."


@dataclass(frozen=True)
class SearchRow:
    name: str
    stage: str
    why: str


STAGE_LABELS = {"plan": "not tried", "screen": "screened", "time": "timed in full", "load": "load-tested"}


def search_rows(run: RunResult) -> list[SearchRow]:
    """Every candidate the run considered, furthest stage first, with why it stopped there."""
    order = {stage: i for i, stage in enumerate(("load", "time", "screen", "plan"))}
    rows = []
    for v in (v for v in run.variants if v.search):
        label = STAGE_LABELS.get(v.search.get("stage"), str(v.search.get("stage")))
        why = (v.search.get("stopped") or "").removeprefix(label + ": ")  # a skip reason may name the stage already
        done = ("the baseline" if v.name == run.baseline else
                "on the frontier" if v.search.get("stage") == "load" else "went through every stage")
        rows.append(SearchRow(v.name, label, why or done))
    stage_of = {v.name: order.get((v.search or {}).get("stage"), 9) for v in run.variants}
    return sorted(rows, key=lambda r: stage_of[r.name])


def search_summary(run: RunResult) -> str:
    """One sentence: how many candidates, how far they got, the time budget and what was not tried."""
    info = run.search or {}
    if not info.get("searched"):
        return ""
    rows = search_rows(run)
    counts = {label: sum(r.stage == label for r in rows) for label in STAGE_LABELS.values()}
    budget = info.get("time_budget_s")
    spent = f"{info.get('elapsed_s', 0):.0f} s" + (f" of a {budget:.0f} s time budget" if budget else "")
    text = (f"Searched {len(rows)} candidates in {spent}: {counts['load-tested']} load-tested, "
            f"{counts['timed in full']} more timed in full, {counts['screened']} stopped after screening")
    if info.get("not_tried"):
        text += f", {len(info['not_tried'])} not tried ({', '.join(info['not_tried'])})"
    return text + "."


# ---------------------------------------------------------------- the confirmation round


@dataclass(frozen=True)
class ConfirmedRow:
    name: str
    speedup: str  # '15.61×', from the round's ratio
    interval: str  # '95% CI 6.93×-35.18×'
    medians: str  # '0.016 vs 0.962 ms'
    threads: str
    is_pick: bool


@dataclass(frozen=True)
class ConfirmationBlock:
    """The final side-by-side round as the report and the terminal show it (results.json's `confirmation`)."""

    summary: str
    rows: list[ConfirmedRow]
    ties: list[str]
    note: str


def confirmation_block(run: RunResult) -> ConfirmationBlock | None:
    c = run.confirmation
    if c is None:
        return None
    rows = [ConfirmedRow(r.name, format_speedup(1 / r.ratio), f"{c.confidence:.0%} CI {format_speedup(1 / r.high)}-"
                         f"{format_speedup(1 / r.low)}", f"{format_ms(r.variant_ms)} vs {format_ms(r.baseline_ms)} ms",
                         r.threads, r.name == c.pick) for r in c.ratios if finite(r.ratio) and r.ratio > 0]
    pick = f"; pick: {c.pick}" if c.pick else ""
    summary = (f"The finalists timed side by side with the baseline {c.baseline}, interleaved sample by sample: "
               f"{c.rounds} rounds of at least {c.samples_per_round} samples a side{pick}.")
    return ConfirmationBlock(summary, rows, [f"{t.winner} over {t.loser}: {t.why}" for t in c.ties], c.note)


def confirmation_lines(run: RunResult) -> list[str]:
    """The round for the terminal: one line each finalist, then the ties and any note."""
    block = confirmation_block(run)
    if block is None:
        return []
    lines = [block.summary]
    lines += [f"  {r.name}: {r.speedup} ({r.interval}), medians {r.medians}{'  <- pick' if r.is_pick else ''}"
              for r in block.rows]
    lines += [f"  tie: {t}" for t in block.ties] + ([f"  {block.note}"] if block.note else [])
    return lines
