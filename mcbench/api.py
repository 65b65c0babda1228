"""The public Python API: what the command line does, as functions that return typed results.

    import mcbench
    results = mcbench.run(quick=True, load=False, out="runs/demo")      # the built-in demo
    best = mcbench.recommend(results)                                    # "ship ..." sentences and a variant
    mcbench.report(results, out="runs/demo/report.html")
    outcome = mcbench.gate(results, budgets="budgets.toml")              # outcome.exit_code: 0, 1, 2 or 3

A bad input raises one of mcbench's user errors (`mcbench.UserErrors`) with the same one-line message the CLI
prints after `mcbench: `; the CLI is a thin layer over these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcbench.bench.load import Master
    from mcbench.config import LoadPlan, RunConfig
    from mcbench.optimizer.profiles import Profile
    from mcbench.reports.compare import RunComparison
    from mcbench.reports.decide import Recommendation
    from mcbench.reports.gate import Outcome
    from mcbench.reports.merge import MultiRun
    from mcbench.reports.schema import RunResult
    from mcbench.run_state import RunPaths

Say = Callable[[str], None]
MERGED_REPORT = "merged-report.html"  # the default page of several machines' runs, in the current folder


def run(model: str | Path | None = None, *, progress: Say | None = print, **settings: Any) -> RunResult:
    """Compile `model` (an .onnx file, a Hugging Face folder, a .pt2 archive, or `package.module:factory`; None: the
    built-in demo) into variants, measure them, and write results.json and report.html in `out`.

    `settings` are a run file's keys (docs/run-files.md; `mcbench.config_keywords` says what a Python caller may
    write more naturally): `out`, `quick`, `time_budget` (seconds, 0: none), `inputs={"x": "1,4"}`,
    `load=False` or `load={"users": [1, 4]}`, ... Returns the run's results, as results.json holds them.
    """
    config = run_config(model, **settings)
    refuse_finished_run(config.out_dir)
    results, paths = execute(config, progress=progress or (lambda _: None))
    report(results, out=paths.report)
    return results


def run_config(model: str | Path | None = None, **settings: Any) -> RunConfig:
    """The RunConfig `run` would use: the defaults (the quick preset with `quick=True`), these settings over them.
    An unknown keyword, or a value its setting refuses, is a ConfigError naming the keyword."""
    from mcbench.config import ConfigError, apply, defaults
    from mcbench.config_keywords import read_keywords

    given = read_keywords(settings if model is None else {"model": model, **settings})
    try:
        config: RunConfig = apply(defaults(quick=bool(given.values.get("quick"))), given.values)
    except ConfigError as exc:
        raise given.error(exc) from None
    return config


def refuse_finished_run(out: Path | None) -> None:
    """A UsageError when `out` already holds a run's results: it is never written over (resume finishes it)."""
    from mcbench.base.errors import UsageError

    if out is not None and (out / "results.json").exists():
        raise UsageError(f"{out} already holds a results.json; choose another --out (or finish it with --resume {out})")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def execute(config: RunConfig, *, resume: RunResult | None = None, progress: Say = print,
            on_folder: Callable[[Path], object] | None = None,
            on_stage: Callable[..., None] | None = None) -> tuple[RunResult, RunPaths]:
    """Run the pipeline for a RunConfig (what `run` and `mcbench run` both do); results.json is written, the
    report is not. Raises mcbench.pipeline.RunInterrupted on SIGINT/SIGTERM with the partial run saved."""
    from mcbench.pipeline import Pipeline

    return Pipeline(config, progress=progress, on_folder=on_folder, on_stage=on_stage).run(resume=resume)


def load(url: str, model: str, *, out: str | Path | None = None, quick: bool = False, token: str | None = None,
         consts: Sequence[str] | dict[str, Any] = (), cores: Sequence[int] = (), plan: LoadPlan | None = None,
         master: Master | None = None, workers: int | None = None, progress: Say | None = print,
         **load_settings: Any) -> RunResult:
    """Load-test model `model` on the KServe v2 server at `url` (Triton, OpenVINO Model Server, `mcbench serve`...):
    both sweeps and the capacity figures, as `mcbench load`; results.json is written in `out`.

    `load_settings` are the run file's `[load]` keys (`users=[1, 4]`, `step_seconds=2`...), checked as there;
    `quick=True` starts from `--quick`'s short steps; `plan` gives a whole LoadPlan instead. `consts` sets 0-d or
    constant inputs (`{"sr": 16000}` or `["sr=16000:int64"]`); `token` is sent as a bearer token (default:
    $MCBENCH_SERVER_TOKEN); `cores` holds Locust to those CPU cores. `master` and `workers`: Locust's master only,
    waiting for `workers` `mcbench load-worker` processes (the command line's --workers).
    """
    import os

    from mcbench.base.errors import UsageError
    from mcbench.bench.guards import TOKEN_ENV
    from mcbench.config_keywords import read_load_keywords
    from mcbench.remote_load import default_out, load_url

    if plan is not None and (load_settings or quick):
        raise UsageError("mcbench.load: give either plan or load settings (and quick), not both")
    plan = plan or read_load_keywords(load_settings, quick)
    token = token or os.environ.get(TOKEN_ENV)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    folder = Path(out) if out is not None else default_out(model)
    return load_url(url, model, plan, folder, headers, _const_texts(consts), list(cores), master, workers,
                    progress or (lambda _: None))


def serve(model: str | Path, *, host: str = "127.0.0.1", port: int = 0, name: str | None = None,
          runtime: str = "onnxruntime", threads: int | None = None, inputs: Sequence[str] = (),
          consts: Sequence[str] | dict[str, Any] = (), allow_code: bool = False, cores: Sequence[int] = (),
          progress: Say | None = print, **limits: Any) -> None:
    """Serve `model` (an .onnx file, or `RUN_DIR:VARIANT` for a variant of a finished run) over KServe v2 HTTP until
    interrupted, as `mcbench serve` does (which calls it); `port=0` picks a free one, printed on the ready line.
    Ctrl-C, SIGTERM and SIGHUP stop the server and reach the caller as a KeyboardInterrupt (SIGTERM's and SIGHUP's
    as its subclass `mcbench.runguard.Terminated`), its scratch folder removed.

    `limits` are the server's limits and configuration (mcbench.bench.guards.ServerLimits): `instances`,
    `max_batch`, `max_wait_ms`, `max_queue`, `timeout_s`, `max_body_bytes`, `max_elements`, `read_timeout_s`,
    `token` (default: $MCBENCH_SERVER_TOKEN), `inline_below_ms`. A run's variant starts its serving search's best
    configuration where `instances` or `max_batch` is left out. `inputs` and `consts` are `--input`/`--const`
    texts for an .onnx file (`consts` may be a dict). A variant whose results name code needs `allow_code=True`.
    """
    import os
    from dataclasses import fields

    from mcbench.base.errors import UsageError
    from mcbench.bench.guards import TOKEN_ENV, ServerLimits
    from mcbench.local_server import serve_model

    known = {f.name for f in fields(ServerLimits)}
    unknown = sorted(set(limits) - known)
    if unknown:
        public = sorted(known - {"delay_ms", "spin_ms"})  # those two are the test suite's known service times
        raise UsageError(f"mcbench.serve: unknown keyword {unknown[0]!r} (known: {', '.join(public)})")
    if limits.get("token") is None:
        limits["token"] = os.environ.get(TOKEN_ENV) or None
    serve_model(str(model), host, port, name, runtime, threads, list(inputs), _const_texts(consts), allow_code,
                list(cores), limits, progress or (lambda _: None))


def _const_texts(consts: Sequence[str] | dict[str, Any]) -> list[str]:
    """`--const` texts (NAME=VALUE[:DTYPE]) from a dict or as given: what intake's parse_constants reads."""
    return [f"{k}={v}" for k, v in consts.items()] if isinstance(consts, dict) else list(consts)


def load_results(path: str | Path) -> RunResult:
    """A results.json, validated against its schema."""
    from mcbench.reports.schema import load_results as load

    return load(Path(path))


def report(results: RunResult | MultiRun | str | Path | Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the HTML report of a run (a RunResult or a results.json path; default: report.html beside the results,
    or in the current folder for a run given as an object), or of one model and config run on several machines,
    side by side (a list of results.json paths, or `load_merged`'s MultiRun; default: merged-report.html in the
    current folder). The report is never written over the results it reads."""
    from mcbench.reports.html import render_merged, write_report
    from mcbench.reports.merge import MultiRun

    if isinstance(results, list | tuple):
        results = load_merged(results)
    if isinstance(results, MultiRun):
        from mcbench.base.files import write_text_atomic

        sources = [m.source for m in results.machines]
        return write_text_atomic(Path(out or MERGED_REPORT), render_merged(results), sources)
    run_result = _results(results)
    where = Path(out) if out is not None else (
        Path(results).with_name("report.html") if isinstance(results, str | Path) else Path("report.html"))
    return write_report(run_result, where, (Path(results),) if isinstance(results, str | Path) else ())


def load_merged(paths: Sequence[str | Path]) -> MultiRun:
    """Several machines' results.json of one model and one config, read and merged (a MergeError names the file
    and what differs): what `report` draws side by side."""
    from mcbench.reports.merge import load_merged as merge

    return merge([Path(p) for p in paths])


def compare(a: RunResult | str | Path, b: RunResult | str | Path,
            out: str | Path | None = None) -> tuple[RunComparison, Path]:
    """A/B: two runs side by side with the significance of each change, written as HTML to `out` (default:
    compare.html beside B's results, or in the current folder for a run given as an object); returns the
    comparison (`reports.compare.comparison_text` says it in words) and the page's path."""
    from mcbench.base.files import check_output, write_text_atomic
    from mcbench.reports.compare import compare_runs
    from mcbench.reports.html import render_comparison

    sources = [Path(x) for x in (a, b) if isinstance(x, str | Path)]
    beside = Path(b).with_name("compare.html") if isinstance(b, str | Path) else Path("compare.html")
    where = check_output(Path(out) if out is not None else beside, sources)  # before the work
    run_a, run_b = _results(a), _results(b)
    comparison = compare_runs(run_a, run_b)
    return comparison, write_text_atomic(where, render_comparison(run_a, run_b), sources)


def export(results: RunResult | str | Path, fmt: str = "csv", out: str | Path | None = None) -> str:
    """The variant table of a run as CSV (`fmt="csv"`, spreadsheet-safe) or Markdown (`"md"`); also written to
    `out` when given."""
    from mcbench.base.errors import UsageError
    from mcbench.base.files import write_text_atomic
    from mcbench.reports.export import FORMATS, export_table

    if fmt not in FORMATS:
        raise UsageError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    text = export_table(_results(results), fmt)
    if out is not None:
        write_text_atomic(out, text, [Path(results)] if isinstance(results, str | Path) else [])
    return text


def recommend(results: RunResult | str | Path, profile: str | None = None,
              objective: str | None = None) -> Recommendation:
    """The variant to ship (or the nearest miss) with the sentences the report gives for it: on the objective the
    run recorded, or on `objective` (p50, p99, throughput, cost) to ask what another one would pick."""
    from mcbench.reports.decide import THIS_MACHINE
    from mcbench.reports.decide import recommend as decide
    from mcbench.reports.decision import parse_objective

    return decide(_results(results), profile or THIS_MACHINE, parse_objective(objective) if objective else None)


def gate(results: RunResult | str | Path, budgets: str | Path | None = None,
         baseline: RunResult | str | Path | None = None, remeasure: int = 0, allow_code: bool = False) -> Outcome:
    """The CI gate's checks; `outcome.exit_code` is what `mcbench gate` exits with (0 pass, 1 fail, 2 could not
    evaluate, 3 inconclusive) and `outcome.checks` the checks with their messages.

    `remeasure` rebuilds the variants' sessions from the results: a results file that names code (a torch
    variant's factory) is refused unless `allow_code` (mcbench.code_rule)."""
    from mcbench.base.errors import UsageError
    from mcbench.reports.gate import evaluate
    from mcbench.reports.gate_budgets import GateConfig, load_budgets
    from mcbench.reports.gate_stats import MAX_ROUNDS, MIN_ROUNDS

    if budgets is None and baseline is None:
        raise UsageError("gate needs budgets, a baseline or both")
    if not _number(remeasure) or (remeasure and not (MIN_ROUNDS <= remeasure <= MAX_ROUNDS and baseline is not None)):
        raise UsageError(f"remeasure N needs {MIN_ROUNDS} <= N <= {MAX_ROUNDS} rounds and a baseline")
    config = load_budgets(Path(budgets)) if budgets is not None else GateConfig()
    run_result, base = _results(results), None if baseline is None else _results(baseline)
    remeasured = None
    if remeasure and base is not None:  # checked above: remeasuring needs a baseline
        from mcbench.code_rule import refuse_results_code
        from mcbench.remeasure import remeasure as measure_again

        for run, given, what in ((base, baseline, "the baseline"), (run_result, results, "the results")):
            refuse_results_code(run, str(given) if isinstance(given, str | Path) else what, allow_code)
        remeasured = measure_again(base, run_result, remeasure, config.defaults)
    return evaluate(run_result, config, base, remeasured)


def profiles() -> dict[str, Profile]:
    """The shipped hardware profiles by the name `profiles=` takes, each validated (`mcbench profiles list`)."""
    from mcbench.optimizer.profiles import load_profile, profile_paths

    return {name: load_profile(path) for name, path in profile_paths().items()}


def find_profile(name: str | Path) -> Profile:
    """A shipped profile by name, or a profile file by path, validated (`mcbench profiles show`); a ProfileError
    names the shipped ones."""
    from mcbench.optimizer.profiles import find_profile as find

    return find(str(name))


def detect_profile(name: str = "detected", out: str | Path | None = None) -> str:
    """A profile of this machine as TOML, from its CPU, cores and runtimes (`mcbench profiles detect`); also written
    to `out` when given, never over an existing file."""
    from mcbench.base.errors import UsageError
    from mcbench.optimizer.profiles import detect_profile as detect

    if out is not None and Path(out).exists():
        raise UsageError(f"{out} exists; choose another --out")
    text = detect(name)
    if out is not None:
        from mcbench.base.files import write_text_atomic

        write_text_atomic(out, text)
    return text


def _results(results: Any) -> RunResult:
    return load_results(results) if isinstance(results, str | Path) else results
