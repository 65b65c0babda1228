"""`mcbench gate`: the CI gate's command; the checks live in reports.gate, the re-measurement in mcbench.remeasure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcbench.reports.gate import Outcome
from mcbench.reports.gate_output import append_step_summary, junit_xml, markdown_summary
from mcbench.reports.gate_stats import MIN_ROUNDS


def add_parser(sub: argparse._SubParsersAction) -> None:
    gate = sub.add_parser("gate", help="check results against latency budgets and a baseline run; exit 0/1/2/3 for CI")
    gate.add_argument("results", type=Path)
    gate.add_argument("--budgets", type=Path, help="budgets TOML (see docs/ci.md)")
    gate.add_argument("--baseline", type=Path, help="results.json of the baseline run, e.g. from the main branch")
    gate.add_argument("--junit", type=Path, help="write JUnit XML here")
    gate.add_argument("--markdown", type=Path, help="write a Markdown summary here")
    gate.add_argument("--remeasure", type=int, metavar="N", default=0,
                      help=f"re-measure baseline and candidate on this machine, N >= {MIN_ROUNDS} interleaved rounds "
                      "(20 is a good default), and compare those round by round")


def cmd_gate(args: argparse.Namespace, usage_error: type[Exception]) -> int:
    if args.budgets is None and args.baseline is None:
        raise usage_error("gate needs --budgets, --baseline or both")
    if args.remeasure < 0 or 0 < args.remeasure < MIN_ROUNDS or (args.remeasure and args.baseline is None):
        raise usage_error(f"--remeasure N needs N >= {MIN_ROUNDS} rounds and a --baseline")
    from mcbench.api import gate

    outcome = gate(args.results, args.budgets, args.baseline, args.remeasure)
    _write(outcome, args)
    return outcome.exit_code


def _write(outcome: Outcome, args: argparse.Namespace) -> None:
    markdown = markdown_summary(outcome)
    if args.junit:
        args.junit.write_text(junit_xml(outcome), encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(markdown, encoding="utf-8")
    append_step_summary(markdown)
    for check in outcome.checks:
        print(f"{check.status.upper():<12} {check.name}: {check.message}")
    print(f"gate: {outcome.verdict} (exit {outcome.exit_code})", file=sys.stderr)
