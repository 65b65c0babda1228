"""Passes: plain functions `(artifact, ctx, out_dir, **params) -> artifact`, registered by name.

A recipe names passes from this registry (see optimizer.recipe_syntax for the text form); each
pass module registers itself on import, and modules are imported lazily so a missing runtime
breaks only the passes that need it. What a pass takes and makes is declared here, without
importing it, so a recipe that cannot apply is refused before any work starts.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.recipe_syntax import RecipeError, Step, bind_arguments, parse_step

PassFn = Callable[..., Artifact]


@dataclass(frozen=True)
class PassInfo:
    module: str  # defines the pass; imported on first use
    takes: tuple[str, ...]  # artifact formats it accepts: "torch", "onnx", "openvino"
    makes: str | None = None  # the format it produces; None: the one it was given
    needs: tuple[str, ...] = ()  # data it uses from the workload: "calibration", "validation"


PASSES: dict[str, PassInfo] = {
    "export.onnx": PassInfo("mcbench.optimizer.passes.convert", ("torch", "pt2"), "onnx"),
    "export.openvino": PassInfo("mcbench.optimizer.passes.convert", ("torch", "pt2"), "openvino"),
    "fuse.transformer": PassInfo("mcbench.optimizer.passes.fuse", ("onnx",)),
    "quant.int8_dynamic": PassInfo("mcbench.optimizer.passes.quantize", ("onnx",)),
    "quant.int8_static": PassInfo("mcbench.optimizer.passes.quantize", ("onnx",), needs=("calibration",)),
    "quant.int8_accuracy_aware": PassInfo("mcbench.optimizer.passes.quantize", ("onnx",),
                                          needs=("calibration", "validation")),
    "quant.fp16": PassInfo("mcbench.optimizer.passes.quantize", ("onnx",)),
    "nncf.int8": PassInfo("mcbench.optimizer.passes.nncf_passes", ("onnx",), "openvino", needs=("calibration",)),
    "nncf.weight_compression": PassInfo("mcbench.optimizer.passes.nncf_passes", ("onnx",), "openvino"),
    "nncf.int8_accuracy_aware": PassInfo("mcbench.optimizer.passes.nncf_passes", ("onnx",), "openvino",
                                         needs=("calibration", "validation")),
    "prune.unstructured": PassInfo("mcbench.optimizer.passes.prune", ("torch",)),
    "prune.structured": PassInfo("mcbench.optimizer.passes.prune", ("torch",)),
}
DATA_NAMES = {"calibration": "calibration data (representative inputs)",
              "validation": "validation data (held-out inputs with class labels: the demo, or --dataset)"}
_REGISTRY: dict[str, PassFn] = {}


class PassError(RuntimeError):
    """A pass could not be applied; the message says why."""


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


def register(name: str) -> Callable[[PassFn], PassFn]:
    def decorate(fn: PassFn) -> PassFn:
        _REGISTRY[name] = fn
        return fn

    return decorate


def get_pass(name: str) -> PassFn:
    if name not in PASSES:
        raise RecipeError(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}")
    if name not in _REGISTRY:
        importlib.import_module(PASSES[name].module)
    return _REGISTRY[name]


def expand_recipe(steps: tuple[Step, ...], source_format: str) -> tuple[Step, ...]:
    """The steps with export.onnx put where an ONNX pass follows a PyTorch model; refused where it cannot apply.

    Each step's arguments are checked against its pass's signature here, so a bad recipe fails
    before any model is built.
    """
    out: list[Step] = []
    fmt = source_format
    for step in steps:
        info = PASSES.get(step.name)
        if info is None:
            raise RecipeError(f"unknown pass {step.name!r}; known passes: {', '.join(sorted(PASSES))}")
        if fmt not in info.takes and "onnx" in info.takes and fmt in PASSES["export.onnx"].takes:
            out.append(Step("export.onnx"))
            fmt = "onnx"
        if fmt not in info.takes:
            raise RecipeError(
                f"{step} works on a {' or '.join(_FORMAT_NAMES[f] for f in info.takes)} model, "
                f"and at that point of the recipe the model is {_FORMAT_NAMES[fmt]}"
            )
        check_choices(step, get_pass(step.name), bind_arguments(step, get_pass(step.name)))
        out.append(step)
        fmt = info.makes or fmt
    return tuple(out)


def check_choices(step: Step, fn: PassFn, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Refuse a value outside a parameter's `Literal[...]` choices (quant.int8_static(method=...))."""
    for name, value in kwargs.items():
        choices = _literal_choices(fn, name)
        if choices and value not in choices:
            raise RecipeError(f"{step}: {name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return kwargs


def _literal_choices(fn: PassFn, name: str) -> tuple[Any, ...]:
    """The values a `Literal[...]` parameter allows; () for any other annotation, or one that does not resolve."""
    annotation = inspect.signature(fn).parameters[name].annotation
    if isinstance(annotation, str):  # `from __future__ import annotations`: resolve in the pass's module
        try:
            annotation = eval(annotation, fn.__globals__)  # noqa: S307 - our own source's annotation text
        except Exception:
            return ()
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


def check_needs(steps: tuple[Step, ...], available: frozenset[str] | set[str]) -> None:
    """Refuse, before any work, a recipe whose passes need data the workload does not have."""
    for step in steps:
        info = PASSES.get(step.name)
        missing = [n for n in (info.needs if info else ()) if n not in available]
        if missing:
            raise RecipeError(f"{step} needs {' and '.join(DATA_NAMES.get(n, n) for n in missing)}, "
                              "and this run has none")


_FORMAT_NAMES = {"torch": "PyTorch", "pt2": "PyTorch (exported program)", "onnx": "ONNX", "openvino": "OpenVINO IR"}


def apply_step(artifact: Artifact, step: Step | str, ctx: PassContext, out_dir: Path) -> Artifact:
    """Run one recipe step (a Step or its text) on an artifact, writing into out_dir."""
    step = parse_step(step) if isinstance(step, str) else step
    fn = get_pass(step.name)
    kwargs = check_choices(step, fn, bind_arguments(step, fn))
    out_dir.mkdir(parents=True, exist_ok=True)
    return fn(artifact, ctx, out_dir, **kwargs)


def apply_passes(artifact: Artifact, steps: tuple[Step | str, ...], ctx: PassContext, out_dir: Path) -> Artifact:
    out_dir.mkdir(parents=True, exist_ok=True)
    for step in steps:
        artifact = apply_step(artifact, step, ctx, out_dir)
    return artifact
