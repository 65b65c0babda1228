"""The variant table as CSV (raw numbers, for a spreadsheet) and Markdown (formatted, for a PR or a wiki page).

Both have the columns of `reports.sections.EXPORT_COLUMNS`, one row per variant, in run order.
"""

from __future__ import annotations

import csv
import io

from mcbench.reports.formatting import Cell
from mcbench.reports.schema import RunResult
from mcbench.reports.sections import EXPORT_COLUMNS, table_rows

FORMATS = ("csv", "md")


def _raw(value: object) -> str:
    """A cell's raw figure for CSV: the number unformatted (integers without ".0"), empty where there is none."""
    if isinstance(value, Cell):
        if value.sort == "":
            return ""
        number = float(value.sort)
        return str(int(number)) if number.is_integer() and abs(number) < 1e15 else value.sort
    return spreadsheet_safe(str(value))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet shows as text: a leading ' where it would start a formula (CSV injection, OWASP)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(run: RunResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([head for head, _ in EXPORT_COLUMNS])
    for row in table_rows(run):
        writer.writerow([_raw(get(row)) for _, get in EXPORT_COLUMNS])
    return out.getvalue()


def _md_cell(value: object) -> str:
    text = value.text if isinstance(value, Cell) else str(value)
    # a pipe would end the cell, a newline the row; < and > are escaped so a name is never read as HTML
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
            .replace("<", "&lt;").replace(">", "&gt;"))


def to_markdown(run: RunResult) -> str:
    heads = [head for head, _ in EXPORT_COLUMNS]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    for row in table_rows(run):
        lines.append("| " + " | ".join(_md_cell(get(row)) for _, get in EXPORT_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def export_table(run: RunResult, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    return to_csv(run) if fmt == "csv" else to_markdown(run)
