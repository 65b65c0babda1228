"""The report's closing sections: the variants that did not finish, each variant's details, the warnings.

Computed here and unit-tested; the templates only lay it out (style principle 12). Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcbench.base.text import first_line
from mcbench.reports.formatting import (
    ERROR_CHARS,
    KeyValue,
    finite,
    flattened_items,
    format_count,
    format_diff,
    format_ms,
    format_percent,
    format_size,
    format_value,
    inputs_text,
    recipe_text,
    variant_colors,
)
from mcbench.reports.load_view import all_steps
from mcbench.reports.schema import LatencyStats, RunResult, VariantResult
from mcbench.reports.speedup import baseline_p50_ms


@dataclass(frozen=True)
class FailedVariant:
    name: str
    status: str
    runtime: str
    recipe: str
    error: str


def failed_variants(run: RunResult) -> list[FailedVariant]:
    """Every variant that did not finish ("failed" or "skipped"), with its full error text."""
    return [
        FailedVariant(v.name, v.status, v.runtime, recipe_text(v.recipe), v.error or "(no error recorded)")
        for v in run.variants if v.status != "ok"
    ]


@dataclass(frozen=True)
class PassRow:
    name: str
    params: list[KeyValue]


@dataclass(frozen=True)
class VariantDetail:
    name: str
    color: str
    status: str
    runtime: str
    recipe: str
    passes: list[PassRow]
    artifact: list[KeyValue]
    settings: list[KeyValue]
    latency: list[KeyValue]
    accuracy: list[KeyValue]
    warnings: list[str]
    error: str


def pass_rows(passes: Any) -> list[PassRow]:
    """Each applied pass with the parameters it recorded (everything in its record but its name)."""
    rows = []
    for record in passes if isinstance(passes, list) else []:
        if isinstance(record, Mapping):
            params = [KeyValue(str(k), format_value(v)) for k, v in record.items() if k != "pass"]
            rows.append(PassRow(str(record.get("pass", "(unnamed)")), params))
        else:
            rows.append(PassRow(str(record), []))
    return rows


def artifact_items(artifact: Mapping[str, Any]) -> list[KeyValue]:
    """The artifact's identity: sha256 and size first, then whatever else was recorded (passes shown apart)."""
    size = artifact.get("size_bytes")
    items = [KeyValue("sha256", format_value(artifact.get("sha256"))),
             KeyValue("size", f"{format_size(size)} ({format_count(size)} B)")]
    rest = [KeyValue(k, inputs_text(v) if k == "inputs" else format_value(v))
            for k, v in artifact.items() if k not in ("sha256", "size_bytes", "passes")]
    return items + rest if artifact else []


def latency_items(lat: LatencyStats | None) -> list[KeyValue]:
    if lat is None:
        return []
    return [
        KeyValue("samples", format_count(lat.count)),
        KeyValue("mean ± stdev ms", f"{format_ms(lat.mean_ms)} ± {format_ms(lat.stdev_ms)}"),
        KeyValue("min / max ms", f"{format_ms(lat.min_ms)} / {format_ms(lat.max_ms)}"),
        KeyValue("coefficient of variation", format_percent(lat.cv if finite(lat.mean_ms) else None)),
    ]


def accuracy_items(variant: VariantResult) -> list[KeyValue]:
    acc = variant.accuracy
    if acc is None:
        return []
    return [
        KeyValue("dataset", acc.dataset or "(none: generated inputs)"),
        KeyValue("samples", format_count(acc.samples)),
        KeyValue("top-1 accuracy", format_percent(acc.top1)),
        KeyValue("agreement with baseline", format_percent(acc.agreement)),
        KeyValue("max / mean abs diff", f"{format_diff(acc.max_abs_diff)} / {format_diff(acc.mean_abs_diff)}"),
        KeyValue("task", acc.task),
        *(KeyValue(f"output {name}", f"{r.role}, batch axis {format_value(r.batch_axis)}: {r.reason}")
          for name, r in acc.roles.items()),
        *(KeyValue(name, format_value(value)) for name, value in acc.metrics.items() if name != "top1"),
    ]


def variant_details(run: RunResult) -> list[VariantDetail]:
    colors = variant_colors(run)
    return [
        VariantDetail(
            name=v.name, color=colors[v.name], status=v.status, runtime=v.runtime, recipe=recipe_text(v.recipe),
            passes=pass_rows(v.passes or v.artifact.get("passes")), artifact=artifact_items(v.artifact),
            settings=flattened_items(v.settings), latency=latency_items(v.latency), accuracy=accuracy_items(v),
            warnings=list(v.warnings), error=v.error or "",
        )
        for v in run.variants
    ]


@dataclass(frozen=True)
class WarningItem:
    scope: str  # "run" or a variant's name
    text: str


def derived_warnings(variant: VariantResult) -> list[str]:
    """Caveats visible in the data that the run did not already state in words."""
    found, said = [], " ".join(variant.warnings).lower()
    if variant.status == "skipped" and "skip" not in said:
        found.append(f"skipped: {first_line(variant.error, ERROR_CHARS) or '(no reason recorded)'}")
    load = variant.load
    if load is not None and load.cores_shared and "shar" not in said:
        found.append("server and load generator share CPU cores: HTTP figures are pessimistic")
    failures = sum(s.failures for s in all_steps(load))
    if load is not None and failures > 0:
        requests = sum(s.requests for s in all_steps(load))
        found.append(f"{failures:,} of {requests:,} HTTP requests failed under load")
    return found


def all_warnings(run: RunResult) -> list[WarningItem]:
    """Run-level warnings, then each variant's (recorded and derived), in run order."""
    items = [WarningItem("run", w) for w in run.warnings]
    if run.baseline and baseline_p50_ms(run) is None:
        items.append(WarningItem("run", f"baseline {run.baseline!r} has no in-process latency: speedups are n/a"))
    for v in run.variants:
        items += [WarningItem(v.name, w) for w in [*v.warnings, *derived_warnings(v)]]
    return items
