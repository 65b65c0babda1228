"""The gate's outcome as JUnit XML (for CI test tabs) and a Markdown table (for PR comments, job summaries)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from mcbench.reports.gate import Outcome

ICONS = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive", "error": "⛔ error"}


def junit_xml(outcome: Outcome) -> str:
    """One testcase per check; fail -> <failure>, error -> <error>, inconclusive -> <skipped>, so counts add up."""
    suite = ET.Element("testsuite", {
        "name": "mcbench gate",
        "tests": str(len(outcome.checks)),
        "failures": str(outcome.count("fail")),
        "errors": str(outcome.count("error")),
        "skipped": str(outcome.count("inconclusive")),
    })
    for check in outcome.checks:
        case = ET.SubElement(suite, "testcase", {"classname": f"mcbench.gate.{check.kind}", "name": check.name})
        tag = {"fail": "failure", "error": "error", "inconclusive": "skipped"}.get(check.status)
        if tag:
            ET.SubElement(case, tag, {"message": check.message})
        else:
            ET.SubElement(case, "system-out").text = check.message
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_summary(outcome: Outcome) -> str:
    counts = ", ".join(f"{outcome.count(s)} {s}" for s in ICONS if outcome.count(s))
    lines = [
        f"## mcbench gate: {outcome.verdict} (exit {outcome.exit_code})",
        "",
        f"{len(outcome.checks)} checks: {counts or 'none'}.",
        "",
        "| status | check | details |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {ICONS[c.status]} | {_cell(c.name)} | {_cell(c.message)} |" for c in outcome.checks]
    return "\n".join(lines) + "\n"


def append_step_summary(markdown: str) -> Path | None:
    """GitHub Actions shows whatever a step appends to $GITHUB_STEP_SUMMARY on the run's page."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as f:
        f.write(markdown + "\n")
    return Path(target)
