"""The `mcbench` command line.

Exit codes: 0 every variant measured; 1 the run finished but a variant failed (or its results could not be
written mid-run, or --mlflow could not log them); 2 bad input (arguments, config, model file, results file,
an unwritable output folder, no MLflow for --mlflow, a store it cannot open);
130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: the finished variants are saved with a partial report.
Errors are one line, `mcbench: ...`; `--debug` shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mcbench.api import MERGED_REPORT  # `mcbench report A/results.json B/results.json` writes it here by default
from mcbench.base.errors import UsageError, UserError

__all__ = ["UsageError", "build_parser", "main", "run_config"]

EXIT_OK, EXIT_VARIANT_FAILED, EXIT_BAD_INPUT = 0, 1, 2  # interrupted: 128 + the signal's number (130, 143)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcbench", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="compile a model into variants, measure them, write results.json and report.html")
    from mcbench.config import RunConfig
    from mcbench.config_flags import add_flags

    add_flags(run, "run", RunConfig)  # every setting's flag, from the schema; the plans' flags in their own groups
    run.add_argument("--allow-code", action="store_true",
                     help="let the --config file name code (a package.module:factory model, a metric, trust_model), "
                     "and with --resume, the results file (its config, a torch variant's factory)")
    run.add_argument("--config", type=Path, metavar="RUN.TOML",
                     help="read the run's settings from a TOML file (parsed, never executed); flags override it")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="finish an interrupted or partly failed run: keep its finished variants, run the rest")
    from mcbench.tracking import add_arguments as add_mlflow_arguments

    add_mlflow_arguments(run)

    profiles = sub.add_parser("profiles", help="hardware profiles: list, show NAME, detect this machine")
    profiles_sub = profiles.add_subparsers(dest="action", required=True)
    profiles_sub.add_parser("list", help="the shipped profiles")
    show = profiles_sub.add_parser("show", help="one profile, validated")
    show.add_argument("name", help="a shipped profile's name or a .toml path")
    detect = profiles_sub.add_parser("detect", help="write a profile for this machine")
    detect.add_argument("--name", default="detected")
    detect.add_argument("--out", type=Path, help="write it here (default: print it)")

    report = sub.add_parser("report", help="re-render report.html from a results.json (with --mlflow: log it); "
                            "from several (one model, one config, several machines), one report with the machines "
                            "side by side")
    report.add_argument("results", type=Path, nargs="+", metavar="RESULTS.json")
    report.add_argument("--out", type=Path, help="where to write the report (default: report.html beside the "
                        f"results; for several results files, {MERGED_REPORT} in the current folder)")
    add_mlflow_arguments(report, after_the_fact=True)

    compare = sub.add_parser("compare", help="A/B: two results.json side by side, with the significance of changes")
    compare.add_argument("a", type=Path, metavar="A.json")
    compare.add_argument("b", type=Path, metavar="B.json")
    compare.add_argument("--out", type=Path, help="where to write the HTML (default: compare.html beside B)")

    export = sub.add_parser("export", help="the variant table of a results.json as CSV or Markdown")
    export.add_argument("results", type=Path)
    export.add_argument("--format", choices=["csv", "md"], default="csv", dest="fmt")
    export.add_argument("--out", type=Path, help="write it here (default: print it)")

    from mcbench.gate_cmd import add_parser as add_gate_parser
    from mcbench.load_cmd import add_parser as add_load_parser
    from mcbench.load_worker import add_parser as add_load_worker_parser
    from mcbench.serve_cmd import add_parser as add_serve_parser

    add_gate_parser(sub)
    add_serve_parser(sub)
    add_load_parser(sub)
    add_load_worker_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.getcwd() not in sys.path:  # `--model pkg.mod:factory` and `--metric` import from here, as uvicorn does
        sys.path.insert(0, os.getcwd())
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "profiles":
            return cmd_profiles(args)
        if args.command == "gate":
            from mcbench.gate_cmd import cmd_gate

            return cmd_gate(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "serve":
            from mcbench.serve_cmd import cmd_serve

            return cmd_serve(args)
        if args.command == "load":
            from mcbench.load_cmd import cmd_load

            return cmd_load(args)
        if args.command == "load-worker":
            from mcbench.load_worker import cmd_load_worker

            return cmd_load_worker(args)
        return cmd_report(args)
    except KeyboardInterrupt as exc:
        from mcbench.runguard import signal_number

        print("mcbench: interrupted", file=sys.stderr)
        return 128 + signal_number(exc)
    except Exception as exc:
        if args.debug:
            raise
        from mcbench.base.imports import missing_extra

        if isinstance(exc, ImportError) and (hint := missing_extra(exc)):
            print(f"mcbench {args.command}: {hint}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(exc, UserError):
            print(f"mcbench: {exc}", file=sys.stderr)
            return exc.exit_code
        print(f"mcbench: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_BAD_INPUT if args.command == "gate" else EXIT_VARIANT_FAILED  # gate's 1 means "regressed"


def run_config(args: argparse.Namespace):
    """The RunConfig the arguments ask for: the defaults (--quick's where asked), a --config file over them, the
    flags over it. Both come from the one schema (mcbench.config); an error names the key or the flag it came from."""
    from mcbench.config import ConfigError, RunConfig, apply, defaults
    from mcbench.config_file import RunFile, load_run_file, refuse_code
    from mcbench.config_flags import flag_values, sweep_rules

    rf = load_run_file(args.config) if args.config else RunFile(source="")
    flags = flag_values(args, "run", RunConfig)
    refuse_code(rf, args.allow_code, overridden=set(flags))
    base = defaults(quick=bool(flags.get("quick") or rf.values.get("quick")))
    underneath = vars(base.load) | {p.removeprefix("load."): v for p, v in rf.values.items() if p.startswith("load.")}
    flags = sweep_rules(flags, underneath)
    try:
        return apply(base, rf.values | flags)
    except ConfigError as exc:
        raise _named(exc, rf, flags) from None


def _named(exc, rf, flags: dict):
    """A schema error in the terms of what set the value: `--seq-len: ...` or `run.toml: key 'seq_len': ...`."""
    from mcbench.config import ConfigError, RunConfig
    from mcbench.config_flags import flag_error

    def touched(paths) -> bool:
        return any(p.startswith(f"{exc.key}.") for p in paths)

    if exc.key and (exc.key in flags or (exc.key not in rf.keys and touched(flags))):
        return flag_error(exc, RunConfig, flags)
    if exc.key in rf.keys or (exc.key and touched(rf.keys)) or (not exc.key and rf.source):
        return rf.error(exc)
    return ConfigError(exc.problem, exc.key)


def resume_config(args: argparse.Namespace):
    """The config to finish `--resume RUN_DIR` with, and the earlier run.

    `--resume RUN_DIR` alone reuses the config recorded in its results.json; with other run arguments
    they must ask for that same config, so a resumed run never mixes two configurations.
    """
    import dataclasses

    from mcbench.config import config_from_dict
    from mcbench.reports.schema import load_results

    if args.out_dir is not None:
        raise UsageError("--resume RUN_DIR names the run folder; do not give --out with it")
    results = args.resume / "results.json"
    if not results.is_file():
        raise UsageError(f"{args.resume}: no results.json to resume (is it a run folder?)")
    from mcbench.code_rule import refuse_results_code

    earlier = load_results(results)
    requested = run_config(args)
    default = run_config(build_parser().parse_args(["run"]))
    recorded = requested.to_dict() == default.to_dict()
    named = frozenset() if recorded or not requested.model else frozenset({requested.model})  # the user's own
    refuse_results_code(earlier, str(results), args.allow_code, config=recorded, trusted=named)  # before an import
    if recorded:
        requested = config_from_dict(earlier.config, str(results))
    else:
        changed = [k for k in sorted((set(requested.to_dict()) | set(earlier.config)) - {"cache_dir"})
                   if requested.to_dict().get(k) != earlier.config.get(k)]  # the cache holds the same bytes anywhere
        if changed:
            key = changed[0]
            raise UsageError(
                f"{results}: this run was made with a different config ({key}: "
                f"{earlier.config.get(key)!r} there, {requested.to_dict().get(key)!r} now); "
                f"resume with the same arguments, or with --resume alone"
            )
    return dataclasses.replace(requested, out_dir=args.resume), earlier



def cmd_run(args: argparse.Namespace) -> int:
    from mcbench.api import execute
    from mcbench.api import report as write_report
    from mcbench.pipeline import RunInterrupted
    from mcbench.progress import RunDisplay
    from mcbench.reports.text import summary_table
    from mcbench.runguard import signals_ignored, signals_raise
    from mcbench.runlog import ThirdPartyOutput
    from mcbench.tracking import TrackingError, tracker_from_args

    earlier = None
    if args.resume is not None:
        config, earlier = resume_config(args)
    else:
        from mcbench.api import refuse_finished_run

        config = run_config(args)
        refuse_finished_run(config.out_dir)
    tracker = tracker_from_args(args)  # before the work: no MLflow or a bad store fails now
    started = time.perf_counter()
    output = ThirdPartyOutput()
    try:
        with output, signals_raise(), RunDisplay(output.terminal) as display:
            run, paths = execute(config, resume=earlier, progress=display.say, on_folder=output.keep_in,
                                 on_stage=display.stage)
    except RunInterrupted as stop:
        with signals_ignored():
            report = write_report(stop.run, out=stop.paths.report)
            print(summary_table(stop.run))
            print(f"\ninterrupted: partial results: {stop.paths.results}\nreport:  {report}\n"
                  f"finish with: mcbench run --resume {stop.paths.root}")
        import signal

        print(f"mcbench: interrupted by {signal.Signals(stop.signum).name}; the finished variants are saved",
              file=sys.stderr)
        return 128 + stop.signum
    report = write_report(run, out=paths.report)
    print(summary_table(run))
    print(f"\nresults: {paths.results}\nreport:  {report}\nwall time: {time.perf_counter() - started:.0f} s")
    code = EXIT_OK if all(v.status in ("ok", "skipped") for v in run.variants) else EXIT_VARIANT_FAILED
    untried = (run.search or {}).get("not_tried") or []
    if untried:  # not a failure: the budget's choice, recorded; the exit code says whether something failed
        print(f"not tried: {len(untried)} candidate(s) the time budget left ({', '.join(untried)}); the exit code "
              f"counts them as skipped; `mcbench run --resume {paths.root}` tries them")
    if tracker is not None:
        try:
            _say_logged(tracker.log(run, paths.root, report=report, log_models=args.mlflow_log_models))
        except TrackingError as exc:
            again = f"mcbench report {paths.results} --mlflow {tracker.shown} --mlflow-experiment {tracker.experiment}"
            again += " --mlflow-log-models" if args.mlflow_log_models else ""
            print(f"mcbench: {exc}; the results are saved: log them with `{again}`", file=sys.stderr)
            return EXIT_VARIANT_FAILED
    return code


def _say_logged(logged) -> None:
    print(logged.summary())
    for note in logged.notes:
        print(f"mlflow:  {note}")


def cmd_profiles(args: argparse.Namespace) -> int:
    import mcbench.api as api

    if args.action == "list":
        for name, profile in api.profiles().items():
            print(f"{name:<20} {profile.device:<11} {profile.description}")
    elif args.action == "show":
        from mcbench.base.files import read_text

        print(read_text(api.find_profile(args.name).source, "profile"), end="")
    else:
        text = api.detect_profile(args.name, out=args.out)
        if args.out:
            print(f"profile: {args.out}")
        else:
            print(text, end="")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    import mcbench.api as api
    from mcbench.tracking import tracker_from_args

    if len(args.results) > 1:  # several machines' runs of one model and config, side by side
        if args.mlflow is not None:
            raise UsageError("report: --mlflow logs one run; give one results file")
        multi = api.load_merged(args.results)
        out = api.report(multi, out=args.out)
        print(f"report: {out} ({len(multi.machines)} machines: {', '.join(multi.labels())})")
        return EXIT_OK
    results = args.results[0]
    tracker = tracker_from_args(args)
    out = api.report(results, out=args.out)
    print(f"report: {out}")
    if tracker is not None:
        run = api.load_results(results)
        _say_logged(tracker.log(run, results.parent, report=out, results=results, log_models=args.mlflow_log_models))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    import mcbench.api as api
    from mcbench.reports.compare import comparison_text

    comparison, out = api.compare(args.a, args.b, out=args.out)
    print(comparison_text(comparison))
    print(f"comparison: {out}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    import mcbench.api as api

    text = api.export(args.results, args.fmt, out=args.out)
    if args.out is None:
        print(text, end="")
    else:
        print(f"{args.fmt}: {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
