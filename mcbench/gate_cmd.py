"""`mcbench gate`: the CI gate's command; the checks live in reports.gate, the re-measurement in mcbench.remeasure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcbench.base.errors import UsageError
from mcbench.base.files import check_output, write_text_atomic
from mcbench.reports.gate import Outcome
from mcbench.reports.gate_output import append_step_summary, junit_xml, markdown_summary
from mcbench.reports.gate_stats import MAX_ROUNDS, MIN_ROUNDS


def add_parser(sub: argparse._SubParsersAction) -> None:
    gate = sub.add_parser("gate", help="check results against latency budgets and a baseline run; exit 0/1/2/3 for CI")
    gate.add_argument("results", type=Path)
    gate.add_argument("--budgets", type=Path, help="budgets TOML (see docs/ci.md)")
    gate.add_argument("--baseline", type=Path, help="results.json of the baseline run, e.g. from the main branch")
    gate.add_argument("--junit", type=Path, help="write JUnit XML here")
    gate.add_argument("--markdown", type=Path, help="write a Markdown summary here")
    gate.add_argument("--remeasure", type=int, metavar="N", default=0,
                      help=f"re-measure baseline and candidate on this machine, {MIN_ROUNDS} <= N <= {MAX_ROUNDS} "
                      "interleaved rounds (20 is a good default), and compare those round by round")
    gate.add_argument("--allow-code", action="store_true",
                      help="with --remeasure: let the results files name code (a torch variant's factory), which "
                      "is imported and called; without it such a variant is refused, as a results file is data")


def cmd_gate(args: argparse.Namespace) -> int:
    if args.budgets is None and args.baseline is None:
        raise UsageError("gate needs --budgets, --baseline or both")
    if args.remeasure and not (MIN_ROUNDS <= args.remeasure <= MAX_ROUNDS and args.baseline is not None):
        raise UsageError(f"--remeasure N needs {MIN_ROUNDS} <= N <= {MAX_ROUNDS} rounds and a --baseline")
    from mcbench.api import gate
    from mcbench.runguard import signals_raise

    inputs = [p for p in (args.results, args.budgets, args.baseline) if p is not None]
    for out in (args.junit, args.markdown):
        if out is not None:
            check_output(out, inputs)  # before the work: a re-measurement can take minutes
    with signals_raise():  # SIGTERM unwinds like Ctrl-C: a re-measuring child is killed, its temp files removed
        outcome = gate(args.results, args.budgets, args.baseline, args.remeasure, allow_code=args.allow_code)
    _write(outcome, args, inputs)
    return outcome.exit_code


def _write(outcome: Outcome, args: argparse.Namespace, inputs: list[Path]) -> None:
    markdown = markdown_summary(outcome)
    if args.junit:
        write_text_atomic(args.junit, junit_xml(outcome), inputs)
    if args.markdown:
        write_text_atomic(args.markdown, markdown, inputs)
    append_step_summary(markdown)
    for check in outcome.checks:
        print(f"{check.status.upper():<12} {check.name}: {check.message}")
    print(f"gate: {outcome.verdict} (exit {outcome.exit_code})", file=sys.stderr)
