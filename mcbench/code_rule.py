"""One rule for what may run code: only what the user names on the command line, or allows there with --allow-code.

A results.json is data, often an artifact downloaded from another CI job. A torch variant's record names a
`factory` ("package.module:callable") and its `factory_args`; the recorded config may name a `model` factory, a
`metric` or `trust_model`. Re-measuring (`mcbench gate --remeasure`, `mcbench.gate(..., remeasure=N)`), serving
(`mcbench serve RUN:VARIANT`) or resuming (`mcbench run --resume RUN`) would import and call them, so each first
asks `refuse_results_code`: unless `--allow-code` (`allow_code=True`) was given, a results file that names code
is refused before anything is imported. mcbench's own factories (the built-in demo, a Hugging Face folder's
module, the calibration spinner) are mcbench's code, not the file's, and are allowed.

Run files follow the same rule (mcbench.config_file.refuse_code).
"""

from __future__ import annotations

from typing import Any

from mcbench.base.errors import UserError

OWN_FACTORIES = frozenset({  # tests/reliability/test_results_are_data.py checks these are the ones mcbench records
    "mcbench.demo:digits_cnn",  # mcbench.demo.DEMO_FACTORY
    "mcbench.optimizer.intake_hf:hf_module",  # optimizer.intake_hf.FACTORY
    "mcbench.bench.calibration:spinner",  # bench.calibration.FACTORY
})


class CodeRefused(UserError):
    """A results file names code and the user did not allow it (exit code 2)."""


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def config_code(config: dict[str, Any]) -> list[str]:
    """What a recorded run config names that would run code: `metric 'evil:f'`, `model 'pkg.mod:factory'`, ..."""
    from mcbench.base.settings import all_fields
    from mcbench.config import RunConfig

    named = []
    for f in all_fields(RunConfig):
        if f.setting.runs_code is None:
            continue
        value: Any = config
        for part in f.path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        try:
            code = value is not None and f.setting.runs_code(value)
        except (TypeError, ValueError, AttributeError, UserError):
            code = True  # a value of the wrong type is not trusted either
        if code:
            named.append(f"{f.path} {_shown(str(value))!r}")
    return named


def variant_code(artifact: dict[str, Any] | None, trusted: frozenset[str] = frozenset()) -> str | None:
    """The factory a variant's artifact record names, unless it is mcbench's own or `trusted` (or None)."""
    factory = (artifact or {}).get("factory")
    if factory is None or factory in OWN_FACTORIES or factory in trusted:
        return None
    return f"factory {_shown(str(factory))!r}"


def refuse_results_code(run: Any, source: str, allowed: bool, variants: list[str] | None = None,
                        config: bool = False, trusted: frozenset[str] = frozenset()) -> None:
    """A CodeRefused unless `allowed`, when the `variants` named (every one: None) or, with `config`, the recorded
    config of `run` (a RunResult read from `source`) name code that mcbench would import and call; `trusted` are
    factories the user named on the command line."""
    if allowed:
        return
    tail = "a results file is data, so it runs code only with --allow-code"
    if config:
        named = config_code(run.config)
        if named:
            raise CodeRefused(f"{source}: its config names code ({named[0]}); {tail}")
    for v in run.variants:
        if variants is not None and v.name not in variants:
            continue
        code = variant_code(v.artifact, trusted)
        if code is not None:
            raise CodeRefused(f"{source}: variant {v.name!r} names code ({code}); {tail}")
