"""Recipe text: `prune.structured(0.3) + quant.int8_static(method=entropy)`, parsed, never executed.

A recipe is a chain of pass steps joined by `+`. A step is a dotted pass name with optional
arguments: numbers, true/false, bare words and quoted strings, positional or `key=value`. The text
is read with Python's `ast` module and only literal nodes are accepted, so nothing in a recipe can
run code. `str(step)` gives the canonical form that names cache folders and results.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from mcbench.base.errors import UserError

Scalar = int | float | bool | str


class RecipeError(UserError):
    """A recipe that does not parse, names an unknown pass, or gives a pass arguments it does not take."""


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[Scalar, ...] = ()
    kwargs: tuple[tuple[str, Scalar], ...] = ()

    @property
    def params(self) -> dict[str, Scalar]:
        return dict(self.kwargs)

    def __str__(self) -> str:
        parts = [_literal_text(a) for a in self.args] + [f"{k}={_literal_text(v)}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})" if parts else self.name


def _literal_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.isidentifier() else repr(value)
    return repr(value)


def parse_recipe(text: str) -> tuple[Step, ...]:
    """The steps of a recipe; an empty text is the empty recipe (the model as given)."""
    if not text.strip():
        return ()
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise RecipeError(f"recipe {text!r} does not parse: {exc.msg} at column {exc.offset}") from None
    return tuple(_steps(tree.body, text))


def parse_step(text: str) -> Step:
    steps = parse_recipe(text)
    if len(steps) != 1:
        raise RecipeError(f"{text!r} is not a single recipe step")
    return steps[0]


def _steps(node: ast.expr, text: str) -> list[Step]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _steps(node.left, text) + _steps(node.right, text)
    if isinstance(node, ast.Call):
        if node.keywords and any(k.arg is None for k in node.keywords):
            raise RecipeError(f"recipe {text!r}: '**' is not allowed")
        args = tuple(_scalar(a, text) for a in node.args)
        kwargs = tuple((k.arg, _scalar(k.value, text)) for k in node.keywords)
        return [Step(_dotted(node.func, text), args, kwargs)]
    return [Step(_dotted(node, text))]


def _dotted(node: ast.expr, text: str) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value, text)}.{node.attr}"
    raise RecipeError(f"recipe {text!r}: expected a pass name such as quant.int8_static, got {ast.unparse(node)!r}")


def _scalar(node: ast.expr, text: str) -> Scalar:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value
    if isinstance(node, ast.Name):  # a bare word: entropy, ort, true
        return {"true": True, "false": False}.get(node.id.lower(), node.id)
    raise RecipeError(f"recipe {text!r}: argument {ast.unparse(node)!r} is not a number, word or quoted string")


def bind_arguments(step: Step, fn: Any) -> dict[str, Any]:
    """The keyword arguments a pass function gets for a step, checked against its signature before any work.

    Pass functions are `(artifact, ctx, out_dir, *, params...)`; positional recipe arguments fill
    the parameters after the first three in order.
    """
    import inspect

    params = [p for p in inspect.signature(fn).parameters.values()][3:]
    names = [p.name for p in params]
    if len(step.args) > len(names):
        raise RecipeError(f"{step}: {step.name} takes at most {len(names)} argument(s) ({', '.join(names) or 'none'})")
    bound = dict(zip(names, step.args, strict=False))
    for key, value in step.kwargs:
        if key not in names:
            raise RecipeError(f"{step}: {step.name} has no parameter {key!r} (it takes: {', '.join(names) or 'none'})")
        if key in bound:
            raise RecipeError(f"{step}: {key!r} given twice")
        bound[key] = value
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in bound]
    if missing:
        raise RecipeError(f"{step}: {step.name} needs {', '.join(missing)}")
    for p in params:
        if p.name in bound and p.default not in (inspect.Parameter.empty, None):
            bound[p.name] = _coerce(step, p.name, bound[p.name], p.default)
    return bound


def _coerce(step: Step, name: str, value: Scalar, default: Any) -> Scalar:
    """Check a value against the type of the parameter's default: 0.3 for a float, 2 accepted as 2.0."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool):
        raise RecipeError(f"{step}: {name} must be {kind.__name__}, got {_literal_text(value)}")
    if not isinstance(value, kind):
        raise RecipeError(f"{step}: {name} must be {kind.__name__}, got {_literal_text(value)}")
    return value


_NAME_PREFIX = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]*)\s*=(?!=)")


@dataclass(frozen=True)
class NamedRecipe:
    name: str  # the variant name's suffix: given as NAME=, else derived from the recipe
    text: str  # as the user wrote it
    steps: tuple[Step, ...]


def parse_named_recipe(text: str) -> NamedRecipe:
    """`NAME=RECIPE` or a bare recipe; a bare recipe is named after its canonical text."""
    match = _NAME_PREFIX.match(text)
    name, body = (match.group(1), text[match.end():]) if match and "(" not in match.group(1) else (None, text)
    steps = parse_recipe(body)
    if name is None:
        canonical = "+".join(str(s) for s in steps) or "base"
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", canonical.replace("(", "-").replace(")", "")).strip("_.-")
    return NamedRecipe(name, text, steps)
