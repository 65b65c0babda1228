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

EXIT_OK, EXIT_VARIANT_FAILED, EXIT_BAD_INPUT = 0, 1, 2  # interrupted: 128 + the signal's number (130, 143)
MERGED_REPORT = "merged-report.html"  # `mcbench report A/results.json B/results.json` writes it here by default


class UsageError(ValueError):
    """Bad input the user can fix; printed as one line, exit code 2."""


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcbench", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="compile a model into variants, measure them, write results.json and report.html")
    run.add_argument("--model", help="an .onnx file, a Hugging Face folder (save_pretrained; needs mcbench[hf]), "
                     "a .pt2 torch.export archive, a pickled module (.pt, needs --trust-model) or "
                     "package.module:factory (default: the built-in digits demo)")
    run.add_argument("--input", action="append", default=[], metavar="NAME=D1,D2,...[:DTYPE[:LOW-HIGH]]",
                     help="shape (and dtype, integer range) of an input; repeat for several inputs")
    run.add_argument("--weights", type=Path, help="state_dict (.pt, loaded weights_only) or .safetensors for a factory")
    run.add_argument("--trust-model", action="store_true",
                     help="allow unpickling a full model file: this runs code from the file")
    run.add_argument("--allow-code", action="store_true",
                     help="let the --config file name code: a package.module:factory model, a metric, trust_model")
    run.add_argument("--dataset", type=Path, help=".npz with one array per model input plus 'labels'")
    run.add_argument("--text-file", type=Path, metavar="LINES.TXT",
                     help="a Hugging Face text model's dataset: one text a line, tokenised with the folder's tokenizer")
    run.add_argument("--labels", type=Path, dest="labels_file", metavar="LABELS.TXT",
                     help="one label a line for --text-file: a class id or a label name from config.json")
    run.add_argument("--seq-len", type=int, metavar="N",
                     help="a Hugging Face text model's sequence length (default 128)")
    run.add_argument("--task", choices=["auto", "classification", "regression", "embedding", "fidelity"],
                     help="what the outputs are, which picks the quality metric (default auto: classification for "
                     "one [batch, classes] output, else fidelity per output)")
    run.add_argument("--quality-budget", metavar="POINTS|METRIC>=X|METRIC<=X",
                     help="what a recommended variant must meet: points from the baseline on the task's metric "
                     "(default 1), or a bound such as cosine_mean>=0.99 (the embedding default) or f1>=0.8")
    run.add_argument("--metric", metavar="package.module:function",
                     help="a user metric: function(outputs, labels) -> float or dict of floats")
    run.add_argument("--out", type=Path, help="run folder (default: a new folder under runs/)")
    run.add_argument("--profile", action="append", default=[], dest="profiles", metavar="NAME_OR_TOML",
                     help="hardware profile to compile and measure for (repeat to compare several)")
    run.add_argument("--quick", action="store_true", help="short measurements: the demo in about a minute and a half")
    run.add_argument("--time-budget", type=float, metavar="SECONDS",
                     help="wall time the search's stages may take (default 240, --quick 75; 0: no limit); a run cut "
                     "by it still recommends from what it measured and says what it did not try")
    run.add_argument("--exhaustive", action="store_true",
                     help="take every candidate through every stage (quality, full timing, load test) instead of "
                     "searching; an explicit --variants or --recipe list always runs this way")
    run.add_argument("--no-load", action="store_true", help="skip the HTTP load test")
    run.add_argument("--variants", type=lambda s: tuple(v for v in s.split(",") if v), default=(),
                     help="comma-separated variant names to run (the baseline always runs)")
    from mcbench.load_cmd import add_sweep_arguments

    add_sweep_arguments(run)
    run.add_argument("--max-batch", type=int, help="also load-test with server dynamic batching of up to N requests")
    run.add_argument("--max-wait-ms", type=_positive_float, help="dynamic batching: longest wait for a batch (ms)")
    run.add_argument("--accuracy-budget", type=float, metavar="POINTS",
                     help="the most top-1 accuracy (agreement where no labels) a recommended variant may lose "
                     "against the baseline, in percentage points (default 1.0)")
    run.add_argument("--config", type=Path, metavar="RUN.TOML",
                     help="read the run's settings from a TOML file (parsed, never executed); flags override it")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="finish an interrupted or partly failed run: keep its finished variants, run the rest")
    run.add_argument("--recipe", action="append", default=[], dest="recipes", metavar="[NAME=]RECIPE",
                     help="a variant as a chain of passes, e.g. 'pruned=prune.structured(0.3) + quant.int8_dynamic'; "
                     "repeat for several; replaces the default variants (the baseline always runs)")
    run.add_argument("--cache-dir", type=Path, help="artifact cache shared across runs "
                     "(default: $MCBENCH_CACHE, else runs/.cache)")
    run.add_argument("--no-cache", action="store_true", help="build every artifact afresh in the run folder")
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

            return cmd_gate(args, UsageError)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "serve":
            from mcbench.serve_cmd import cmd_serve

            return cmd_serve(args, UsageError)
        if args.command == "load":
            from mcbench.load_cmd import cmd_load

            return cmd_load(args, UsageError)
        if args.command == "load-worker":
            from mcbench.load_worker import cmd_load_worker

            return cmd_load_worker(args, UsageError)
        return cmd_report(args)
    except KeyboardInterrupt as exc:
        from mcbench.runguard import signal_number

        print("mcbench: interrupted", file=sys.stderr)
        return 128 + signal_number(exc)
    except Exception as exc:
        if args.debug:
            raise
        from mcbench.runguard import OutputError, ResultsWriteError

        if isinstance(exc, OutputError):
            print(f"mcbench: {exc}", file=sys.stderr)
            return EXIT_VARIANT_FAILED if isinstance(exc, ResultsWriteError) else EXIT_BAD_INPUT
        if _is_user_error(exc):
            print(f"mcbench: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"mcbench: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_BAD_INPUT if args.command == "gate" else EXIT_VARIANT_FAILED  # gate's 1 means "regressed"


def _is_user_error(exc: Exception) -> bool:
    from mcbench.bench.datasets import DatasetError
    from mcbench.config import ConfigError
    from mcbench.optimizer.intake import IntakeError
    from mcbench.optimizer.profiles import ProfileError
    from mcbench.reports.gate import GateDataError
    from mcbench.reports.gate_budgets import GateConfigError
    from mcbench.reports.merge import MergeError
    from mcbench.reports.plots import ReportError
    from mcbench.reports.schema import SchemaError
    from mcbench.tracking import TrackingError

    gate_errors = GateConfigError | GateDataError
    return isinstance(exc, UsageError | ConfigError | IntakeError | DatasetError | ProfileError | SchemaError
                      | ReportError | MergeError | TrackingError | gate_errors)


def run_config(args: argparse.Namespace):
    """The RunConfig the arguments ask for (a --config file, then the flags over it); bad input is a UsageError."""
    import dataclasses

    from mcbench.config import ConfigError, RunConfig
    from mcbench.config_file import RunFile, load_run_file, refuse_code
    from mcbench.load_cmd import plan_from_args
    from mcbench.optimizer.cache import default_cache_dir
    from mcbench.optimizer.intake import parse_inputs

    rf = load_run_file(args.config) if args.config else RunFile(source="")
    overridden = {k for k, flag in (("model", args.model), ("metric", args.metric), ("trust_model", args.trust_model))
                  if flag}
    refuse_code(rf, args.allow_code, overridden)
    quick = args.quick or bool(rf.quick)
    base = RunConfig.quick_mode() if quick else RunConfig()
    try:
        timing = dataclasses.replace(base.timing, **rf.timing)
    except ValueError as exc:
        raise rf.fail("timing", str(exc)) from None
    load = base.load
    if rf.load.get("enabled") is False:
        load = None
    elif rf.load:
        fields = {k: v for k, v in rf.load.items() if k != "enabled"}
        try:
            load = dataclasses.replace(load, **fields)
        except ValueError as exc:
            raise rf.fail("load", str(exc)) from None
    if args.no_load:
        load = None
    elif load is not None:
        load = plan_from_args(args, load, UsageError)
    if load is not None and (args.max_batch or args.max_wait_ms):
        batching = {"max_batch": args.max_batch or 8, "max_wait_ms": args.max_wait_ms or load.max_wait_ms}
        try:
            load = dataclasses.replace(load, **batching)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    inputs = parse_inputs(args.input) if args.input else _file_inputs(rf, parse_inputs)
    try:
        return dataclasses.replace(
            base, model=args.model or rf.model, inputs=inputs,
            out_dir=args.out or rf.out, load=load, timing=timing, variants=args.variants or tuple(rf.variants),
            weights=args.weights or rf.weights, trust_model=args.trust_model or bool(rf.trust_model),
            dataset=args.dataset or rf.dataset, text_file=args.text_file or rf.text_file,
            labels_file=args.labels_file or rf.labels_file, seq_len=_first(args.seq_len, rf.seq_len, base.seq_len),
            task=args.task or rf.task or "auto",
            quality_budget=args.quality_budget or rf.quality_budget or base.quality_budget,
            metric=args.metric or rf.metric, profiles=tuple(args.profiles or rf.profiles),
            accuracy_budget=_first(args.accuracy_budget, rf.accuracy_budget, base.accuracy_budget),
            recipes=tuple(args.recipes or rf.recipes),
            cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
            time_budget_s=_time_budget(_first(args.time_budget, rf.time_budget, base.time_budget_s or 0)),
            exhaustive=args.exhaustive or bool(rf.exhaustive),
            search_exclude=tuple(rf.search.get("exclude", ())), search_add=tuple(rf.search.get("add", ())),
        )
    except ConfigError as exc:
        raise ConfigError(f"{rf.source}: {exc}" if rf.source else str(exc)) from None


def _time_budget(seconds: float) -> float | None:
    if seconds < 0:
        raise UsageError(f"--time-budget {seconds:g}: give seconds, or 0 for no limit")
    return seconds or None


def _first(*values):
    """The first value that is not None: a flag, else the run file, else the default."""
    return next(v for v in values if v is not None)


def _file_inputs(rf, parse_inputs) -> dict:
    """The run file's `inputs`, parsed as --input is; a bad one names the file and the key."""
    from mcbench.optimizer.intake import IntakeError

    try:
        return parse_inputs(rf.inputs)
    except IntakeError as exc:
        raise rf.fail("inputs", str(exc)) from None


def resume_config(args: argparse.Namespace):
    """The config to finish `--resume RUN_DIR` with, and the earlier run.

    `--resume RUN_DIR` alone reuses the config recorded in its results.json; with other run arguments
    they must ask for that same config, so a resumed run never mixes two configurations.
    """
    import dataclasses

    from mcbench.config import config_from_dict
    from mcbench.reports.schema import load_results

    if args.out is not None:
        raise UsageError("--resume RUN_DIR names the run folder; do not give --out with it")
    results = args.resume / "results.json"
    if not results.is_file():
        raise UsageError(f"{args.resume}: no results.json to resume (is it a run folder?)")
    earlier = load_results(results)
    requested = run_config(args)
    default = run_config(build_parser().parse_args(["run"]))
    if requested.to_dict() == default.to_dict():
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
    from mcbench.pipeline import RunInterrupted
    from mcbench.progress import RunDisplay
    from mcbench.reports.html import write_report
    from mcbench.reports.text import summary_table
    from mcbench.runguard import signals_ignored, signals_raise
    from mcbench.runlog import ThirdPartyOutput
    from mcbench.tracking import TrackingError, tracker_from_args

    earlier = None
    if args.resume is not None:
        config, earlier = resume_config(args)
    else:
        config = run_config(args)
        if config.out_dir is not None and (config.out_dir / "results.json").exists():
            raise UsageError(f"{config.out_dir} already holds a results.json; choose another --out "
                             f"(or finish it with --resume {config.out_dir})")
    tracker = tracker_from_args(args, UsageError)  # before the work: no MLflow or a bad store fails now
    started = time.perf_counter()
    output = ThirdPartyOutput()
    try:
        with output, signals_raise(), RunDisplay(output.terminal) as display:
            run, paths = execute(config, resume=earlier, progress=display.say, on_folder=output.keep_in,
                                 on_stage=display.stage)
    except RunInterrupted as stop:
        with signals_ignored():
            report = write_report(stop.run, stop.paths.report)
            print(summary_table(stop.run))
            print(f"\ninterrupted: partial results: {stop.paths.results}\nreport:  {report}\n"
                  f"finish with: mcbench run --resume {stop.paths.root}")
        import signal

        print(f"mcbench: interrupted by {signal.Signals(stop.signum).name}; the finished variants are saved",
              file=sys.stderr)
        return 128 + stop.signum
    report = write_report(run, paths.report)
    print(summary_table(run))
    print(f"\nresults: {paths.results}\nreport:  {report}\nwall time: {time.perf_counter() - started:.0f} s")
    code = EXIT_OK if all(v.status in ("ok", "skipped") for v in run.variants) else EXIT_VARIANT_FAILED
    if tracker is not None:
        try:
            _say_logged(tracker.log(run, paths.root, report=report, log_models=args.mlflow_log_models))
        except TrackingError as exc:
            again = f"mcbench report {paths.results} --mlflow {tracker.uri} --mlflow-experiment {tracker.experiment}"
            again += " --mlflow-log-models" if args.mlflow_log_models else ""
            print(f"mcbench: {exc}; the results are saved: log them with `{again}`", file=sys.stderr)
            return EXIT_VARIANT_FAILED
    return code


def _say_logged(logged) -> None:
    print(logged.summary())
    for note in logged.notes:
        print(f"mlflow:  {note}")


def cmd_profiles(args: argparse.Namespace) -> int:
    from mcbench.optimizer.profiles import detect_profile, find_profile, load_profile, profile_paths

    if args.action == "list":
        for name, path in profile_paths().items():
            profile = load_profile(path)
            print(f"{name:<20} {profile.device:<11} {profile.description}")
    elif args.action == "show":
        profile = find_profile(args.name)
        print(Path(profile.source).read_text(encoding="utf-8"), end="")
    else:
        text = detect_profile(args.name)
        if args.out:
            if args.out.exists():
                raise UsageError(f"{args.out} exists; choose another --out")
            args.out.write_text(text, encoding="utf-8")
            print(f"profile: {args.out}")
        else:
            print(text, end="")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from mcbench.reports.html import render_merged, write_report, write_text_atomic
    from mcbench.reports.merge import load_merged
    from mcbench.reports.schema import load_results
    from mcbench.tracking import tracker_from_args

    if len(args.results) > 1:  # several machines' runs of one model and config, side by side
        if args.mlflow is not None:
            raise UsageError("report: --mlflow logs one run; give one results file")
        multi = load_merged(args.results)
        out = write_text_atomic(args.out or Path(MERGED_REPORT), render_merged(multi))
        print(f"report: {out} ({len(multi.machines)} machines: {', '.join(multi.labels())})")
        return EXIT_OK
    results = args.results[0]
    run = load_results(results)
    tracker = tracker_from_args(args, UsageError)
    out = write_report(run, args.out or results.with_name("report.html"))
    print(f"report: {out}")
    if tracker is not None:
        _say_logged(tracker.log(run, results.parent, report=out, results=results, log_models=args.mlflow_log_models))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from mcbench.reports.compare import compare_runs, comparison_text
    from mcbench.reports.html import render_comparison, write_text_atomic
    from mcbench.reports.schema import load_results

    a, b = load_results(args.a), load_results(args.b)
    print(comparison_text(compare_runs(a, b)))
    out = write_text_atomic(args.out or args.b.with_name("compare.html"), render_comparison(a, b))
    print(f"comparison: {out}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from mcbench.reports.export import export_table
    from mcbench.reports.html import write_text_atomic
    from mcbench.reports.schema import load_results

    text = export_table(load_results(args.results), args.fmt)
    if args.out is None:
        print(text, end="")
    else:
        print(f"{args.fmt}: {write_text_atomic(args.out, text)}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
