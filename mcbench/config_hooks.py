"""What a run setting does beyond its type and range: the hooks RunConfig's declarations name (mcbench.config).

A `parse` hook reads a run file's, a flag's or `mcbench.run`'s value into the field's (`inputs_value`), a
`resolve` hook places it beside the run file (`model_beside`), a `check` or `choices` hook asks the package that
owns the meaning (`check_quality_budget`, `task_choices`), a `load` hook reads results.json's form back. Each
imports what it needs when called, so declaring the schema stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcbench.base.settings import ConfigError
from mcbench.optimizer.intake import InputConstant, InputOverride


def shared_cache() -> Path:
    """The artifact cache runs share by default: $MCBENCH_CACHE, else runs/.cache (optimizer.cache), absolute."""
    from mcbench.optimizer.cache import default_cache_dir

    return default_cache_dir()


def task_choices() -> tuple[str, ...]:
    from mcbench.bench.metrics import AUTO, TASKS

    return (*TASKS, AUTO)


def _texts(items: Any, values: tuple[type, ...]) -> list[str] | None:
    """A list of `NAME=VALUE` texts, or a table NAME -> VALUE (of the types `values`) as those texts; else None."""
    if isinstance(items, dict):
        ok = all(isinstance(k, str) and isinstance(v, values) and not isinstance(v, bool) for k, v in items.items())
        return [f"{name}={value}" for name, value in items.items()] if ok else None
    if isinstance(items, list | tuple) and all(isinstance(i, str) for i in items):
        return list(items)
    return None


def inputs_value(items: Any) -> dict[str, InputOverride]:
    """`inputs = ["x=1,3,224,224"]` (or --input, repeated), or a table `[inputs] x = "1,3,224,224"`, parsed as
    --input is; IntakeError if one cannot be."""
    from mcbench.optimizer.intake import parse_inputs

    if isinstance(items, dict) and all(isinstance(v, InputOverride) for v in items.values()):
        return items
    texts = _texts(items, (str,))
    if texts is None:
        raise ConfigError("expected a list of strings NAME=D1,D2,...[:DTYPE[:LOW-HIGH]] or a table NAME = "
                          "'D1,D2,...'")
    return parse_inputs(texts)


def output_roles_value(items: Any) -> dict[str, str]:
    """`outputs = ["output0=yolov8"]` (or --output, repeated), or a table `[outputs] output0 = "yolov8"`."""
    from mcbench.bench.roles import OutputRoleError, parse_output_roles

    if isinstance(items, str) or not isinstance(items, list | tuple | dict):
        raise ConfigError("expected a list of strings NAME=ROLE")
    try:
        return parse_output_roles(items)
    except OutputRoleError as exc:
        raise ConfigError(str(exc).removeprefix("--output ")) from None


def recorded_inputs(data: dict) -> dict[str, InputOverride]:
    return {k: InputOverride(**{**v, "shape": tuple(v["shape"])}) for k, v in data.items()}


def consts_value(items: Any) -> dict[str, InputConstant]:
    """`consts = ["sr=16000"]` (or --const, repeated), or a table `[consts] sr = 16000`, parsed as --const is;
    IntakeError if one cannot be."""
    from mcbench.optimizer.intake import CONST_SYNTAX, parse_constants

    if isinstance(items, dict) and all(isinstance(v, InputConstant) for v in items.values()):
        return items
    texts = _texts(items, (str, int, float))
    if texts is None:
        raise ConfigError(f"expected a list of strings {CONST_SYNTAX} or a table NAME = VALUE")
    return parse_constants(texts)


def recorded_consts(data: dict) -> dict[str, InputConstant]:
    return {k: InputConstant(**v) for k, v in data.items()}


def quality_budget_text(value: Any) -> Any:
    """A number of points, read as its text ("1.0"), as --quality-budget reads it; anything else unchanged."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(float(value))
    return value


def check_quality_budget(text: str) -> None:
    from mcbench.reports.quality import parse_quality_budget

    parse_quality_budget(text)  # QualityBudgetError says what forms it takes


def objective_choices() -> tuple[str, ...]:
    from mcbench.reports.decision import objective_choices

    return objective_choices()


def is_factory(model: str) -> bool:
    return ":" in model and not model.endswith((".onnx", ".pt", ".pt2"))


def model_beside(model: str, base: Path, key: str) -> str:
    """A model file relative to the run file's folder; a `package.module:factory` as written."""
    return model if is_factory(model) else str(base / model)


def profiles_beside(names: tuple[str, ...], base: Path, key: str) -> tuple[str, ...]:
    """Each profile resolved now (a shipped name, or a .toml beside the run file), so a typo costs nothing."""
    from mcbench.optimizer.profiles import ProfileError, find_profile

    resolved = []
    for name in names:
        ref = str(base / name) if name.endswith(".toml") else name
        try:
            find_profile(ref)
        except ProfileError as exc:
            raise ConfigError(str(exc), key) from None
        resolved.append(ref)
    return tuple(resolved)


def recipes_checked(texts: tuple[str, ...], base: Path, key: str) -> tuple[str, ...]:
    """Each `[NAME=]RECIPE` parsed (literals only) and each step bound to its pass; an error names `key[i]`."""
    from mcbench.optimizer.passes import bind_step
    from mcbench.optimizer.recipes import RecipeError, parse_named_recipe

    for i, text in enumerate(texts):
        try:
            for step in parse_named_recipe(text).steps:
                bind_step(step)
        except RecipeError as exc:
            raise ConfigError(str(exc), f"{key}[{i}]") from None
    return texts
