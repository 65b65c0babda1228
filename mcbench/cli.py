"""The `mcbench` command line.

Exit codes: 0 every variant measured; 1 the run finished but a variant failed; 2 bad input (arguments,
model file, results file); 130 interrupted. Errors are one line, `mcbench: ...`; `--debug` shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_VARIANT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    run.add_argument("--model", help="an .onnx file, a .pt2 torch.export archive, a pickled module (.pt, needs "
                     "--trust-model) or package.module:factory (default: the built-in digits demo)")
    run.add_argument("--input", action="append", default=[], metavar="NAME=D1,D2,...[:DTYPE[:LOW-HIGH]]",
                     help="shape (and dtype, integer range) of an input; repeat for several inputs")
    run.add_argument("--weights", type=Path, help="state_dict (.pt, loaded weights_only) or .safetensors for a factory")
    run.add_argument("--trust-model", action="store_true",
                     help="allow unpickling a full model file: this runs code from the file")
    run.add_argument("--dataset", type=Path, help=".npz with one array per model input plus 'labels'")
    run.add_argument("--task", default="classification", choices=["classification", "regression", "embedding"],
                     help="which metrics the dataset's labels feed (default classification)")
    run.add_argument("--metric", metavar="package.module:function",
                     help="a user metric: function(outputs, labels) -> float or dict of floats")
    run.add_argument("--out", type=Path, help="run folder (default: a new folder under runs/)")
    run.add_argument("--profile", action="append", default=[], dest="profiles", metavar="NAME_OR_TOML",
                     help="hardware profile to compile and measure for (repeat to compare several)")
    run.add_argument("--quick", action="store_true", help="short measurements: the demo in under two minutes")
    run.add_argument("--no-load", action="store_true", help="skip the HTTP load test")
    run.add_argument("--variants", type=lambda s: tuple(v for v in s.split(",") if v), default=(),
                     help="comma-separated variant names to run (the baseline always runs)")
    run.add_argument("--recipe", action="append", default=[], dest="recipes", metavar="[NAME=]RECIPE",
                     help="a variant as a chain of passes, e.g. 'pruned=prune.structured(0.3) + quant.int8_dynamic'; "
                     "repeat for several; replaces the default variants (the baseline always runs)")
    run.add_argument("--cache-dir", type=Path, help="artifact cache shared across runs "
                     "(default: $MCBENCH_CACHE, else runs/.cache)")
    run.add_argument("--no-cache", action="store_true", help="build every artifact afresh in the run folder")
    run.add_argument("--concurrency", type=_positive_ints, help="Locust user counts to step through, e.g. 1,2,4,8")
    run.add_argument("--step-seconds", type=_positive_float, help="seconds per load step")

    profiles = sub.add_parser("profiles", help="hardware profiles: list, show NAME, detect this machine")
    profiles_sub = profiles.add_subparsers(dest="action", required=True)
    profiles_sub.add_parser("list", help="the shipped profiles")
    show = profiles_sub.add_parser("show", help="one profile, validated")
    show.add_argument("name", help="a shipped profile's name or a .toml path")
    detect = profiles_sub.add_parser("detect", help="write a profile for this machine")
    detect.add_argument("--name", default="detected")
    detect.add_argument("--out", type=Path, help="write it here (default: print it)")

    report = sub.add_parser("report", help="re-render report.html from a results.json")
    report.add_argument("results", type=Path)
    report.add_argument("--out", type=Path, help="where to write the report (default: beside the results)")

    from mcbench.gate_cmd import add_parser as add_gate_parser

    add_gate_parser(sub)
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
        return cmd_report(args)
    except KeyboardInterrupt:
        print("mcbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        if _is_user_error(exc):
            print(f"mcbench: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"mcbench: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_BAD_INPUT if args.command == "gate" else EXIT_VARIANT_FAILED  # gate's 1 means "regressed"


def _is_user_error(exc: Exception) -> bool:
    from bench.datasets import DatasetError
    from mcbench.config import ConfigError
    from optimizer.intake import IntakeError
    from optimizer.profiles import ProfileError
    from reports.gate import GateDataError
    from reports.gate_budgets import GateConfigError
    from reports.schema import SchemaError

    gate_errors = GateConfigError | GateDataError
    return isinstance(exc, UsageError | ConfigError | IntakeError | DatasetError | ProfileError | SchemaError
                      | gate_errors)


def run_config(args: argparse.Namespace):
    """The RunConfig the arguments ask for; bad combinations are UsageErrors."""
    import dataclasses

    from mcbench.config import LoadPlan, RunConfig
    from optimizer.cache import default_cache_dir
    from optimizer.intake import parse_inputs

    base = RunConfig.quick_mode() if args.quick else RunConfig()
    load = base.load
    if args.no_load:
        load = None
    elif args.concurrency or args.step_seconds:
        step = args.step_seconds or load.step_seconds
        try:
            load = LoadPlan(args.concurrency or load.users, step, min(load.warmup_s, step / 4))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return dataclasses.replace(
        base, model=args.model, inputs=parse_inputs(args.input), out_dir=args.out, load=load,
        variants=args.variants, weights=args.weights, trust_model=args.trust_model, dataset=args.dataset,
        task=args.task, metric=args.metric, profiles=tuple(args.profiles), recipes=tuple(args.recipes),
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from mcbench.pipeline import Pipeline
    from reports.html import write_report
    from reports.text import summary_table

    config = run_config(args)
    if config.out_dir is not None and (config.out_dir / "results.json").exists():
        raise UsageError(f"{config.out_dir} already holds a results.json; choose another --out")
    started = time.perf_counter()
    run, paths = Pipeline(config, progress=_progress).run()
    report = write_report(run, paths.report)
    print(summary_table(run))
    print(f"\nresults: {paths.results}\nreport:  {report}\nwall time: {time.perf_counter() - started:.0f} s")
    return EXIT_OK if all(v.status in ("ok", "skipped") for v in run.variants) else EXIT_VARIANT_FAILED


def cmd_profiles(args: argparse.Namespace) -> int:
    from optimizer.profiles import detect_profile, find_profile, load_profile, profile_paths

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
    from reports.html import write_report
    from reports.schema import load_results

    run = load_results(args.results)
    out = write_report(run, args.out or args.results.with_name("report.html"))
    print(f"report: {out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
