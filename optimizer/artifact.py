"""What flows between the optimizer's stages: input specs and model artifacts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.base.errors import UserError
from mcbench.optimizer.graph_stats import model_stats

FLOAT_DTYPES = ("float32", "float16", "float64")
INT_DTYPES = ("int64", "int32", "int8", "uint8", "bool")


class InputError(UserError):
    """An input mcbench cannot generate safely; the message says what to give instead."""


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, a fully static shape, numpy dtype name, and a value range for integer inputs.

    `batch_axis` is the axis that holds the batch (None: the input has none, as a 0-d input, and every inference
    gets it whole). `value` makes the input a constant: every generated input of this spec is filled with it
    (`--const`, or a 0-d array in a dataset). `selects_branch` marks an integer input the graph compares or
    branches on, whose random values could send the model down a path it never takes in use: it is never
    generated from the range, only from `value`.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    low: int = 0
    high: int = 100
    batch_axis: int | None = 0
    value: float | int | bool | None = None
    selects_branch: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in FLOAT_DTYPES + INT_DTYPES:
            raise ValueError(f"input {self.name!r}: dtype {self.dtype!r} is not supported")
        if any(d <= 0 for d in self.shape):
            raise ValueError(f"input {self.name!r}: shape {list(self.shape)} has a non-positive dimension")
        if not self.shape and self.batch_axis is not None:
            object.__setattr__(self, "batch_axis", None)  # a 0-d input has no axis to batch on
        if self.batch_axis is not None and not 0 <= self.batch_axis < len(self.shape):
            raise ValueError(f"input {self.name!r}: batch axis {self.batch_axis} is not an axis of {list(self.shape)}")

    @property
    def batch(self) -> int:
        """Samples in one inference: the size of the batch axis (1 for an input without one)."""
        return 1 if self.batch_axis is None else self.shape[self.batch_axis]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A generated input of this spec: its constant, standard normal floats, or integers in [low, high)."""
        if self.value is not None:
            return np.full(self.shape, self.value, dtype=self.dtype)
        if self.selects_branch:
            raise InputError(self.branch_problem())
        if self.dtype in FLOAT_DTYPES:
            return rng.standard_normal(self.shape).astype(self.dtype)
        if self.dtype == "bool":
            return rng.integers(0, 2, self.shape).astype(bool)
        return rng.integers(self.low, self.high, self.shape).astype(self.dtype)

    def branch_problem(self) -> str:
        """Why mcbench does not generate this input, and what to give instead."""
        kind = f"{'0-d ' if not self.shape else ''}{self.dtype}"
        ranged = "" if not self.shape else f", a safe range with --input {self.name}=...:{self.dtype}:LOW-HIGH"
        return (f"input {self.name!r} ({kind}) selects a branch of the model, so random values could take a path it "
                f"never takes in use: give its value with --const {self.name}=VALUE{ranged} or an array in --dataset")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "low": self.low,
                             "high": self.high}
        if self.batch_axis != (0 if self.shape else None):
            d["batch_axis"] = self.batch_axis
        if self.value is not None:
            d["value"] = self.value
        if self.selects_branch:
            d["selects_branch"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        shape = tuple(d["shape"])
        return cls(d["name"], shape, d.get("dtype", "float32"), d.get("low", 0), d.get("high", 100),
                   d.get("batch_axis", 0 if shape else None), d.get("value"), bool(d.get("selects_branch", False)))


def how_generated(spec: InputSpec) -> str:
    """How generated values of an input are made, for the run's warnings: `sr = 16000`, `x: standard normal`."""
    if spec.value is not None:
        return f"{spec.name} = {spec.value!r}"
    shape = list(spec.shape)
    if spec.dtype in FLOAT_DTYPES:
        return f"{spec.name} {shape} {spec.dtype}: standard normal"
    if spec.dtype == "bool":
        return f"{spec.name} {shape} bool: random"
    return f"{spec.name} {shape} {spec.dtype}: uniform integers in [{spec.low}, {spec.high})"


def generated_inputs(specs: tuple[InputSpec, ...], count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """`count` feeds from the specs (constants as given); InputError for an input that must not be random."""
    rng = np.random.default_rng(seed)
    return [{s.name: s.sample(rng) for s in specs} for _ in range(count)]


def input_shapes(specs: tuple[InputSpec, ...]) -> dict[str, tuple[int, ...]]:
    """Each input's name and shape: what the graph statistics fix the model's inputs to."""
    return {s.name: s.shape for s in specs}


def sha256_of(*paths: Path) -> str:
    """The SHA-256 of a file, or of several files read one after the other (an IR's .xml and .bin)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


FORMATS = ("onnx", "torch", "pt2", "openvino")


@dataclass(frozen=True)
class Artifact:
    """A deployable model file and how to load it.

    `format` is "onnx" (path is the .onnx file), "torch" (path is a state_dict file loaded with
    weights_only=True into the module that `factory`, a "package.module:callable", returns), or
    "pt2" (path is a torch.export archive), or "openvino" (path is an IR .xml, its weights in
    the .bin beside it; OpenVINO runs it, onnxruntime cannot). `factory_args` are the JSON-friendly
    keyword arguments the factory is called with (a Hugging Face folder's config and head).
    """

    path: Path
    format: str
    inputs: tuple[InputSpec, ...]
    factory: str | None = None
    passes: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    factory_args: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"artifact format {self.format!r} is not 'onnx', 'torch', 'pt2' or 'openvino'")
        if self.format == "torch" and not self.factory:
            raise ValueError("a torch artifact needs a factory ('package.module:callable')")

    def manifest(self) -> dict[str, Any]:
        """What the artifact is, for results.json: file facts, and for ONNX its parameters and FLOPs."""
        stats = {}
        if self.format == "onnx":
            everything = model_stats(self.path, input_shapes(self.inputs))
            stats = {k: everything[k] for k in ("parameters", "flops", "opset")}
        return {
            **stats,
            "path": str(self.path),
            "format": self.format,
            "sha256": sha256_of(*self.files()),
            "size_bytes": sum(f.stat().st_size for f in self.files()),
            "factory": self.factory,
            **({"factory_args": self.factory_args} if self.factory_args else {}),
            "inputs": [s.to_dict() for s in self.inputs],
            "passes": list(self.passes),
        }

    def files(self) -> tuple[Path, ...]:
        """The files that make up the model: the IR's .bin goes with its .xml."""
        return (self.path, self.path.with_suffix(".bin")) if self.format == "openvino" else (self.path,)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "inputs": [s.to_dict() for s in self.inputs],
            "factory": self.factory,
            "factory_args": self.factory_args,
            "passes": list(self.passes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        return cls(
            path=Path(d["path"]),
            format=d["format"],
            inputs=tuple(InputSpec.from_dict(s) for s in d["inputs"]),
            factory=d.get("factory"),
            passes=tuple(d.get("passes", ())),
            factory_args=d.get("factory_args"),
        )


def with_passes(artifact: Artifact, passes: tuple[dict[str, Any], ...], path: Path | None = None) -> Artifact:
    """The same model (format, inputs, factory and its arguments) with other pass records, or at another path."""
    return replace(artifact, passes=passes, path=artifact.path if path is None else path)
