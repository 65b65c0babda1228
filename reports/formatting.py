"""Figures as the report prints them: "n/a" for anything missing, NaN or infinite; a variant's colour and recipe
as every table and chart shows them."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcbench.reports.schema import RunResult

NA = "n/a"


# ---------------------------------------------------------------- formatting


def finite(value: Any) -> float | None:
    """The value as a float, or None where it is missing, not a number, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def format_percent(fraction: Any, digits: int = 1) -> str:
    value = finite(fraction)
    return NA if value is None else f"{value * 100:.{digits}f}%"


def format_ms(value: Any) -> str:
    """Milliseconds with about three significant digits, down to the microsecond the samples keep."""
    ms = finite(value)
    if ms is None:
        return NA
    digits = 3 if abs(ms) < 1 else 2 if abs(ms) < 10 else 1 if abs(ms) < 100 else 0
    return f"{ms:,.{digits}f}"


def format_rps(value: Any) -> str:
    rps = finite(value)
    if rps is None:
        return NA
    return f"{rps:,.0f}" if abs(rps) >= 100 else f"{rps:.1f}"


def format_speedup(value: Any) -> str:
    """Two decimals; two significant digits below 0.1, so a 700× slowdown does not read "0.00×"."""
    ratio = finite(value)
    if ratio is None:
        return NA
    return f"{ratio:.2f}×" if abs(ratio) >= 0.1 else f"{ratio:.2g}×"


def format_size(size_bytes: Any) -> str:
    """Binary units, named as such (KiB, MiB), so a size is never off by 2.4%."""
    size = finite(size_bytes)
    if size is None:
        return NA
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(size) >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def format_diff(value: Any) -> str:
    """An output difference: three significant digits, scientific notation where small."""
    diff = finite(value)
    return NA if diff is None else f"{diff:.3g}"


def format_seconds(value: Any) -> str:
    seconds = finite(value)
    return NA if seconds is None else f"{seconds:.1f}"


def format_count(value: Any) -> str:
    count = finite(value)
    return NA if count is None else f"{count:,.0f}"


def json_text(value: Any) -> str:
    """Compact JSON for a nested value, NaN and infinities as null (they are not JSON)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        return [clean(x) for x in v] if isinstance(v, list | tuple) else v

    return json.dumps(clean(value), default=str, allow_nan=False, separators=(", ", ": "))


def format_value(value: Any) -> str:
    """Any settings or environment value as one line of text; NaN and None read "n/a"."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return NA if finite(value) is None else f"{value:g}"
    if isinstance(value, list | tuple):
        if all(not isinstance(v, dict | list | tuple) for v in value):
            return ", ".join(format_value(v) for v in value) if value else "(none)"
        return json_text(value)
    if isinstance(value, Mapping):
        return json_text(value) if value else "(none)"
    return str(value)


def format_created(created: str) -> str:
    """An ISO timestamp as "YYYY-MM-DD HH:MM:SS UTC" style text; anything unparsable is shown as recorded."""
    try:
        stamp = datetime.fromisoformat(created)
    except (TypeError, ValueError):
        return str(created)
    zone = stamp.strftime("%Z") if stamp.tzinfo is not None else ""
    return f"{stamp:%Y-%m-%d %H:%M:%S} {zone}".strip()


@dataclass(frozen=True)
class Cell:
    """A table cell: the text shown and the key the table sorts by ("" where there is no figure)."""

    text: str
    sort: str = ""


def number_cell(value: Any, formatter: Callable[[Any], str]) -> Cell:
    """The formatted figure, sorted by its raw value; "n/a" sorts last."""
    number = finite(value)
    return Cell(formatter(value), "" if number is None else repr(number))


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str


def flattened_items(data: Mapping[str, Any], prefix: str = "") -> list[KeyValue]:
    """Nested mappings as dotted keys ("libraries.torch"), so every environment value gets its own row."""
    rows: list[KeyValue] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(flattened_items(value, f"{name}."))
        else:
            rows.append(KeyValue(name, format_value(value)))
    return rows

def inputs_text(inputs: Any) -> str:
    """Model inputs as "x: 1×3×224×224 float32"; anything else as recorded."""
    if not isinstance(inputs, list) or not all(isinstance(i, Mapping) for i in inputs):
        return format_value(inputs)
    parts = []
    for spec in inputs:
        shape = spec.get("shape")
        dims = "×".join(str(d) for d in shape) if isinstance(shape, list) else format_value(shape)
        parts.append(f"{spec.get('name', '?')}: {dims} {spec.get('dtype', '')}".strip())
    return "; ".join(parts) if parts else "(none)"


# ---------------------------------------------------------------- variants in tables and charts

ERROR_CHARS = 120  # an error's line in a table cell

# Tableau 10, a palette made for telling categories apart; a variant keeps its colour in every chart.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)


def recipe_text(recipe: Sequence[str]) -> str:
    return " → ".join(recipe) if recipe else "(none)"


def variant_colors(run: RunResult) -> dict[str, str]:
    return {v.name: PALETTE[i % len(PALETTE)] for i, v in enumerate(run.variants)}
