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

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcbench.config import RunConfig
    from mcbench.pipeline import RunPaths
    from mcbench.reports.decide import Recommendation
    from mcbench.reports.gate import Outcome
    from mcbench.reports.schema import RunResult

Say = Callable[[str], None]


def run(
    model: str | Path | None = None, *, out: str | Path | None = None, quick: bool = False, load: bool = True,
    inputs: dict[str, str] | None = None, consts: dict[str, str | float] | None = None,
    dataset: str | Path | None = None, task: str = "auto", quality_budget: str | float | None = None,
    profiles: Iterable[str] = (), variants: Iterable[str] = (),
    recipes: Iterable[str] = (), time_budget: float | None = None, exhaustive: bool = False,
    cache_dir: str | Path | None = None, objective: str | None = None, progress: Say | None = print,
) -> RunResult:
    """Compile `model` (an .onnx file, a Hugging Face folder, a .pt2 archive, or `package.module:factory`; None: the
    built-in demo) into variants, measure them, and write results.json and report.html in `out`.

    `inputs` maps an input name to `D1,D2,...[:DTYPE[:LOW-HIGH]]` as `--input` takes it, `consts` an input name to
    its value (`VALUE[:DTYPE]`, or a number) as `--const` takes it; `time_budget` is the
    search's in seconds (None: the default, 0: none). Returns the run's results, as results.json holds them.
    """
    config = run_config(model, out=out, quick=quick, load=load, inputs=inputs, consts=consts, dataset=dataset,
                        task=task, quality_budget=quality_budget, profiles=profiles, variants=variants, recipes=recipes,
                        time_budget=time_budget, exhaustive=exhaustive, cache_dir=cache_dir, objective=objective)
    refuse_finished_run(config.out_dir)
    results, paths = execute(config, progress=progress or (lambda _: None))
    report(results, out=paths.report)
    return results


def run_config(model: str | Path | None = None, *, out: str | Path | None = None, quick: bool = False,
               load: bool = True, inputs: dict[str, str] | None = None,
               consts: dict[str, str | float] | None = None, dataset: str | Path | None = None,
               task: str = "auto", quality_budget: str | float | None = None, profiles: Iterable[str] = (),
               variants: Iterable[str] = (), recipes: Iterable[str] = (), time_budget: float | None = None,
               exhaustive: bool = False, cache_dir: str | Path | None = None, objective: str | None = None,
               ) -> RunConfig:
    """The RunConfig `run` would use: the defaults (quick ones with `quick`), these settings over them."""
    from mcbench.config import ConfigError, RunConfig
    from mcbench.optimizer.cache import default_cache_dir
    from mcbench.optimizer.intake import parse_constants, parse_inputs

    base = RunConfig.quick_mode() if quick else RunConfig()
    if time_budget is not None and (not _number(time_budget) or time_budget < 0):
        raise ConfigError(f"time_budget {time_budget!r}: give seconds as a number, or 0 for no limit")
    parsed = parse_inputs(_input_specs(inputs))
    constants = parse_constants([f"{name}={value}" for name, value in (consts or {}).items()])
    profiles, variants, recipes = (_names(n, v) for n, v in (("profiles", profiles), ("variants", variants),
                                                              ("recipes", recipes)))
    return dataclasses.replace(
        base, model=None if model is None else str(model), out_dir=None if out is None else Path(out),
        load=base.load if load else None, inputs=parsed, consts=constants,
        dataset=None if dataset is None else Path(dataset),
        task=task, quality_budget=None if quality_budget is None else str(quality_budget),
        profiles=tuple(profiles), variants=tuple(variants), recipes=tuple(recipes),
        time_budget_s=base.time_budget_s if time_budget is None else (time_budget or None), exhaustive=exhaustive,
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(),
        objective=objective or base.objective,
    )


def refuse_finished_run(out: Path | None) -> None:
    """A UsageError when `out` already holds a run's results: it is never written over (resume finishes it)."""
    from mcbench.base.errors import UsageError

    if out is not None and (out / "results.json").exists():
        raise UsageError(f"{out} already holds a results.json; choose another --out (or finish it with --resume {out})")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(what: str, value: object) -> tuple[str, ...]:
    """One name given as a string is one item, never its characters; anything but strings is a ConfigError."""
    from mcbench.config import ConfigError

    items = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, Iterable) else None
    if items is None or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{what} {value!r}: give a name or a list of names")
    return items


def _input_specs(inputs: object) -> list[str]:
    """`{"x": "1,4"}`, or `--input` texts as the CLI takes them: "x=1,4" or a list of them."""
    from mcbench.config import ConfigError

    if isinstance(inputs, dict):
        return [f"{name}={spec}" for name, spec in inputs.items()]
    if inputs is None or isinstance(inputs, str | list | tuple):
        return list(_names("inputs", inputs or ()))
    raise ConfigError(f"inputs {inputs!r}: give a dict of NAME: 'D1,D2,...' or 'NAME=D1,D2,...' texts")


def execute(config: RunConfig, *, resume: RunResult | None = None, progress: Say = print,
            on_folder: Callable[[Path], object] | None = None,
            on_stage: Callable[..., None] | None = None) -> tuple[RunResult, RunPaths]:
    """Run the pipeline for a RunConfig (what `run` and `mcbench run` both do); results.json is written, the
    report is not. Raises mcbench.pipeline.RunInterrupted on SIGINT/SIGTERM with the partial run saved."""
    from mcbench.pipeline import Pipeline

    return Pipeline(config, progress=progress, on_folder=on_folder, on_stage=on_stage).run(resume=resume)


def load_results(path: str | Path) -> RunResult:
    """A results.json, validated against its schema."""
    from mcbench.reports.schema import load_results as load

    return load(Path(path))


def report(results: RunResult | str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of a run (or of a results.json path); default: report.html beside the results,
    or in the current folder for a run given as an object."""
    from mcbench.reports.html import write_report

    run_result = _results(results)
    where = Path(out) if out is not None else (
        Path(results).with_name("report.html") if isinstance(results, str | Path) else Path("report.html"))
    return write_report(run_result, where, (Path(results),) if isinstance(results, str | Path) else ())


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


def _results(results: Any) -> RunResult:
    return load_results(results) if isinstance(results, str | Path) else results
