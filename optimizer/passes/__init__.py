"""Passes: plain functions `(artifact, ctx, out_dir, **config) -> artifact`, one record each.

A pass is declared once, beside its function, and nowhere else:

    @register("quant.int8_static", takes=("onnx",), needs=("calibration",), libraries=("onnx", "onnxruntime"))
    def int8_static(artifact, ctx, out_dir, method: Method = "minmax", per_channel: bool = True) -> Artifact:

`register` makes the pass's `PassRecord` from these arguments and from the function itself: the name,
the module, the config (each parameter after the first three: its type, default and `Literal` choices,
read from the signature that `bind_arguments` binds a recipe's arguments to, so the two cannot
disagree), the artifact formats it takes and makes, the data it needs from the run
(`DATA_NAMES`) and the distributions whose versions go into its cache key (optimizer.cache). A record
that does not hold together (an unknown format or need, a parameter without a default or of a type a
recipe cannot write, a name registered twice) is refused when its module is imported, with a
TypeError naming the pass.

The registry is every module of this package, imported on first use (`records()`). Pass modules import
only numpy and mcbench at the top and their libraries (torch, onnxruntime, openvino, nncf) inside the
pass, through `targets.require`, so knowing the registry imports no heavy library and a missing one
breaks only the passes that use it, with an install hint. So there is no second table to keep in step
(this replaced a name -> module/takes/makes/needs index here and cache.STEP_LIBRARIES, both synced by
hand with the decorators). tests/test_pass_conformance.py checks all of this, and runs every registered
pass on a tiny model of each format it takes.

A record is enforced in one place, `apply_passes` (`apply_step` for one step): a step whose pass does
not take the format the model has at that step, or needs data the context lacks, is refused with a
PassError before any pass runs. A recipe is checked against the same records before any model is built
(`expand_recipe`: formats and arguments; `check_needs`: the data a run will have). Data a pass uses
when it is there (prune.structured fine-tunes on training data) is not a need.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mcbench.optimizer.artifact import FORMATS, Artifact
from mcbench.optimizer.recipe_syntax import RecipeError, Scalar, Step, bind_arguments, parse_step

PassFn = Callable[..., Artifact]
DATA_NAMES = {"calibration": "calibration data (representative inputs)",
              "validation": "validation data (held-out inputs with class labels: the demo, or --dataset)",
              "train": "training data (inputs with class labels)"}
CONFIG_TYPES = (bool, int, float, str)  # what a recipe can write (optimizer.recipe_syntax)
_FORMAT_NAMES = {"torch": "PyTorch", "pt2": "PyTorch (exported program)", "onnx": "ONNX", "openvino": "OpenVINO IR"}


class PassError(RuntimeError):
    """A pass could not be applied; the message says why."""


@dataclass(frozen=True)
class Param:
    """One config parameter of a pass: what a recipe may set, e.g. `quant.int8_static(method=entropy)`."""

    name: str
    type: type  # bool, int, float or str
    default: Scalar
    choices: tuple[Scalar, ...] = ()  # a `Literal[...]` parameter's values; () for any value of the type

    def __str__(self) -> str:
        kind = " | ".join(map(str, self.choices)) if self.choices else self.type.__name__
        return f"{self.name}: {kind} = {self.default}"


@dataclass(frozen=True)
class PassRecord:
    """Everything mcbench knows about a pass; made by `register` from its arguments and the function."""

    name: str  # "family.pass", what a recipe names
    fn: PassFn
    module: str  # the module defining fn: its source is part of the cache key
    takes: tuple[str, ...]  # artifact formats it accepts (optimizer.artifact.FORMATS)
    makes: str | None  # the format it produces; None: the one it was given
    needs: tuple[str, ...]  # data it cannot run without (DATA_NAMES), enforced by apply_step
    libraries: tuple[str, ...]  # distributions whose versions change what it produces: the cache key
    config: tuple[Param, ...]  # from fn's signature

    def makes_from(self, fmt: str) -> str:
        return self.makes or fmt

    def summary(self) -> str:
        return (inspect.getdoc(self.fn) or "").split("\n")[0]


_RECORDS: dict[str, PassRecord] = {}
_loaded = False


def register(name: str, *, takes: Iterable[str], makes: str | None = None, needs: Iterable[str] = (),
             libraries: Iterable[str]) -> Callable[[PassFn], PassFn]:
    """Declare a pass: its function is decorated, the rest is the record (see the module docstring)."""

    def decorate(fn: PassFn) -> PassFn:
        record = make_record(name, fn, tuple(takes), makes, tuple(needs), tuple(libraries))
        known = _RECORDS.get(name)
        if known is not None and (known.module, known.fn.__qualname__) != (record.module, fn.__qualname__):
            raise TypeError(f"pass {name}: registered twice, by {known.module}.{known.fn.__qualname__} "
                            f"and {record.module}.{fn.__qualname__}")
        _RECORDS[name] = record  # the same function again: its module was reloaded
        return fn

    return decorate


def make_record(name: str, fn: PassFn, takes: tuple[str, ...], makes: str | None, needs: tuple[str, ...],
                libraries: tuple[str, ...]) -> PassRecord:
    """The record of a pass function; TypeError, naming the pass, where it does not hold together."""

    def refuse(why: str) -> TypeError:
        return TypeError(f"pass {name}: {why}")

    if name.count(".") != 1 or not all(part.isidentifier() for part in name.split(".")):
        raise refuse("the name must be 'family.pass' (two identifiers joined by a dot)")
    for fmt in (*takes, *([makes] if makes else [])):
        if fmt not in FORMATS:
            raise refuse(f"unknown artifact format {fmt!r} (known: {', '.join(FORMATS)})")
    if not takes:
        raise refuse("takes no artifact format")
    unknown = [n for n in needs if n not in DATA_NAMES]
    if unknown:
        raise refuse(f"needs unknown data {unknown[0]!r} (known: {', '.join(DATA_NAMES)})")
    if not libraries:
        raise refuse("names no library: the cache key would not change when its library does")
    return PassRecord(name, fn, fn.__module__, takes, makes, needs, libraries, _config(name, fn, refuse))


def _config(name: str, fn: PassFn, refuse: Callable[[str], TypeError]) -> tuple[Param, ...]:
    """The parameters after (artifact, ctx, out_dir), each with a default of a type a recipe can write."""
    params = list(inspect.signature(fn).parameters.values())
    if [p.name for p in params[:3]] != ["artifact", "ctx", "out_dir"]:
        raise refuse(f"{fn.__qualname__} must start with (artifact, ctx, out_dir)")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise refuse(f"{fn.__qualname__}'s annotations do not resolve ({type(exc).__name__}: {exc})") from exc
    config = []
    for p in params[3:]:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise refuse(f"parameter {p.name}: *args and **kwargs cannot be set from a recipe")
        if p.default is p.empty:
            raise refuse(f"parameter {p.name} has no default: a recipe must be able to name the pass alone")
        annotation = hints.get(p.name)
        choices = typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()
        kind = type(choices[0]) if choices else annotation
        if kind not in CONFIG_TYPES or any(type(c) is not kind for c in choices):
            raise refuse(f"parameter {p.name}: annotate it bool, int, float, str or a Literal of one of them, "
                         f"got {annotation!r}")
        if type(p.default) is not kind or (choices and p.default not in choices):
            raise refuse(f"parameter {p.name}: default {p.default!r} is not a {getattr(kind, '__name__', kind)}"
                         + (f" in {choices}" if choices else ""))
        config.append(Param(p.name, kind, p.default, choices))
    return tuple(config)


def records() -> dict[str, PassRecord]:
    """Every registered pass by name; the first call imports this package's modules (no heavy library)."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True
    return _RECORDS


def pass_record(name: str) -> PassRecord:
    record = records().get(name)
    if record is None:
        raise RecipeError(f"unknown pass {name!r}; known passes: {', '.join(sorted(records()))}")
    return record


@dataclass
class PassContext:
    """What a pass may need beyond the model: calibration inputs, and a place to say what it did."""

    calibration: list[dict[str, np.ndarray]] | None = None
    calibration_source: str = "none"
    train: tuple[dict[str, np.ndarray], np.ndarray] | None = None  # inputs (N, ...) by name, labels: fine-tuning
    validation: tuple[list[dict[str, np.ndarray]], np.ndarray] | None = None  # held-out feeds and their labels
    messages: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        self.messages.append(message)

    def data(self) -> frozenset[str]:
        """The data this context holds, by the names a record's `needs` uses."""
        held = {"calibration": bool(self.calibration), "validation": self.validation is not None,
                "train": self.train is not None}
        return frozenset(name for name, present in held.items() if present)


def bind_step(step: Step) -> tuple[PassRecord, dict[str, Any]]:
    """The step's pass and the keyword arguments it gets; RecipeError for a bad name, argument, type or choice."""
    record = pass_record(step.name)
    return record, check_choices(step, record, bind_arguments(step, record.fn))


def check_choices(step: Step, record: PassRecord, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Refuse a value outside a parameter's `Literal[...]` choices (quant.int8_static(method=...))."""
    choices = {p.name: p.choices for p in record.config}
    for name, value in kwargs.items():
        if choices.get(name) and value not in choices[name]:
            raise RecipeError(f"{step}: {name} must be one of {', '.join(map(str, choices[name]))}, got {value!r}")
    return kwargs


def expand_recipe(steps: tuple[Step, ...], source_format: str) -> tuple[Step, ...]:
    """The steps with export.onnx put where an ONNX pass follows a PyTorch model; refused where it cannot apply.

    Each step's arguments are checked against its pass's config here, so a bad recipe fails
    before any model is built.
    """
    out: list[Step] = []
    fmt = source_format
    export = pass_record("export.onnx")
    for step in steps:
        record, _ = bind_step(step)
        if fmt not in record.takes and "onnx" in record.takes and fmt in export.takes:
            out.append(Step("export.onnx"))
            fmt = "onnx"
        if fmt not in record.takes:
            raise RecipeError(
                f"{step} works on a {' or '.join(_FORMAT_NAMES[f] for f in record.takes)} model, "
                f"and at that point of the recipe the model is {_FORMAT_NAMES[fmt]}"
            )
        out.append(step)
        fmt = record.makes_from(fmt)
    return tuple(out)


def _needs_text(step: Step, missing: list[str]) -> str:
    return f"{step} needs {' and '.join(DATA_NAMES[n] for n in missing)}"


def check_needs(steps: tuple[Step, ...], available: frozenset[str] | set[str]) -> None:
    """Refuse, before any work, a recipe whose passes need data the run will not have (its plan, not a context)."""
    for step in steps:
        missing = [n for n in pass_record(step.name).needs if n not in available]
        if missing:
            raise RecipeError(f"{_needs_text(step, missing)}, and this run has none")


def refusal(step: Step, record: PassRecord, fmt: str, data: frozenset[str]) -> str | None:
    """Why the record refuses a model of this format with this data (a format it does not take, data it
    needs), or None."""
    if fmt not in record.takes:
        wanted = " or ".join(_FORMAT_NAMES[f] for f in record.takes)
        article = "an" if wanted[0] in "AEIOU" else "a"
        if "onnx" in record.takes and fmt in pass_record("export.onnx").takes:
            return f"{step} needs {article} {wanted} model; put export.onnx before it in the recipe"
        return f"{step} needs {article} {wanted} model, not {_FORMAT_NAMES[fmt]}"
    missing = [n for n in record.needs if n not in data]
    if missing:
        return f"{_needs_text(step, missing)}, and none was given"
    return None


def apply_step(artifact: Artifact, step: Step | str, ctx: PassContext, out_dir: Path) -> Artifact:
    """Run one recipe step (a Step or its text) on an artifact, writing into out_dir.

    The pass's record is enforced here, before anything is read or written: a format it does not take,
    or data it needs and the context lacks, is a PassError.
    """
    return apply_passes(artifact, (step,), ctx, out_dir)


def apply_passes(artifact: Artifact, steps: tuple[Step | str, ...], ctx: PassContext, out_dir: Path) -> Artifact:
    """Run the steps in order, writing into out_dir.

    Every step is checked first, before any pass runs: its arguments (RecipeError), and its record
    against the format the model will have at that step and the context's data (PassError).
    """
    bound = []
    fmt = artifact.format
    for step in steps:
        step = parse_step(step) if isinstance(step, str) else step
        record, kwargs = bind_step(step)
        why = refusal(step, record, fmt, ctx.data())
        if why:
            raise PassError(why)
        bound.append((record, kwargs))
        fmt = record.makes_from(fmt)
    for record, kwargs in bound:
        out_dir.mkdir(parents=True, exist_ok=True)
        artifact = record.fn(artifact, ctx, out_dir, **kwargs)
    return artifact
