"""Passes: plain functions `(artifact, ctx, out_dir) -> artifact`, registered by name.

A recipe names passes from this registry; each pass module registers itself on import, and
modules are imported lazily so a missing runtime breaks only the passes that need it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optimizer.artifact import Artifact

PassFn = Callable[[Artifact, "PassContext", Path], Artifact]

# pass name -> module that defines it (imported on first use)
PASS_MODULES: dict[str, str] = {
    "export.onnx": "optimizer.passes.convert",
    "quant.int8_dynamic": "optimizer.passes.quantize",
    "quant.int8_static": "optimizer.passes.quantize",
}
_REGISTRY: dict[str, PassFn] = {}


class PassError(RuntimeError):
    """A pass could not be applied; the message says why."""


@dataclass
class PassContext:
    """What a pass may need beyond the model: calibration inputs, and a place to say what it did."""

    calibration: list[dict[str, np.ndarray]] | None = None
    calibration_source: str = "none"
    messages: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        self.messages.append(message)


def register(name: str) -> Callable[[PassFn], PassFn]:
    def decorate(fn: PassFn) -> PassFn:
        _REGISTRY[name] = fn
        return fn

    return decorate


def get_pass(name: str) -> PassFn:
    if name not in PASS_MODULES:
        raise PassError(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASS_MODULES))}")
    if name not in _REGISTRY:
        importlib.import_module(PASS_MODULES[name])
    return _REGISTRY[name]


def apply_passes(artifact: Artifact, names: tuple[str, ...], ctx: PassContext, out_dir: Path) -> Artifact:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        artifact = get_pass(name)(artifact, ctx, out_dir)
    return artifact
