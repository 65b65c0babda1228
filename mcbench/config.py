"""The run configuration: what the CLI (or a caller) asks one `mcbench run` to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.latency import QUICK_PLAN, TimingPlan
from optimizer.intake import InputOverride


class ConfigError(ValueError):
    """A run configuration that cannot be carried out; the message says what to change."""


@dataclass(frozen=True)
class LoadPlan:
    """Closed-loop Locust steps: concurrent users, seconds each, of which the first `warmup_s` are not counted."""

    users: tuple[int, ...] = (1, 2, 4, 8)
    step_seconds: float = 10.0
    warmup_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.users or any(u < 1 for u in self.users):
            raise ValueError(f"concurrency levels must be positive integers, got {list(self.users)}")
        if self.step_seconds <= self.warmup_s or self.warmup_s < 0:
            raise ValueError(f"a load step of {self.step_seconds} s must be longer than its {self.warmup_s} s warm-up")

    def steps(self) -> list[tuple[int, float]]:
        return [(u, self.step_seconds) for u in self.users]


QUICK_LOAD = LoadPlan(users=(1, 4), step_seconds=3.0, warmup_s=0.5)


@dataclass(frozen=True)
class RunConfig:
    model: str | None = None  # an .onnx/.pt2/.pt file or package.module:factory; None: the built-in demo
    inputs: dict[str, InputOverride] = field(default_factory=dict)  # --input NAME=...
    weights: Path | None = None  # a state_dict (weights_only) or .safetensors file for a factory
    trust_model: bool = False  # allow unpickling a full module
    dataset: Path | None = None  # .npz with one array per input plus labels
    task: str = "classification"
    metric: str | None = None  # package.module:function(outputs, labels) -> float | dict
    profiles: tuple[str, ...] = ()  # hardware profile names or .toml paths; empty: this machine's defaults
    out_dir: Path | None = None
    quick: bool = False
    timing: TimingPlan = TimingPlan()
    load: LoadPlan | None = LoadPlan()  # None: no HTTP load test
    variants: tuple[str, ...] = ()  # empty: all default variants
    recipes: tuple[str, ...] = ()  # `[NAME=]RECIPE` texts; non-empty: the baseline plus these, not the defaults
    cache_dir: Path | None = None  # where built artifacts are cached across runs; None: no cache

    def __post_init__(self) -> None:
        from bench.metrics import TASKS

        if self.task not in TASKS:
            raise ConfigError(f"--task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.model is None and (self.inputs or self.weights or self.dataset):
            raise ConfigError("--input, --weights and --dataset describe a --model; the built-in demo needs none")

    @property
    def from_torch(self) -> bool:
        """Whether the model comes from PyTorch (and so has an eager baseline)."""
        return self.model is None or not self.model.endswith(".onnx")

    @property
    def source_format(self) -> str:
        """The base artifact's format, known before the model is loaded: what recipes are checked against."""
        if self.model is not None and self.model.endswith(".onnx"):
            return "onnx"
        if self.model is not None and self.model.endswith((".pt2", ".pt", ".pth", ".pkl", ".bin", ".ckpt")):
            return "pt2"  # a torch.export archive, or a pickled module that intake exports to one
        return "torch"

    @classmethod
    def quick_mode(cls, **kwargs) -> RunConfig:
        return cls(quick=True, timing=QUICK_PLAN, load=QUICK_LOAD, **kwargs)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "weights": str(self.weights) if self.weights else None,
            "trust_model": self.trust_model,
            "dataset": str(self.dataset) if self.dataset else None,
            "task": self.task,
            "metric": self.metric,
            "profiles": list(self.profiles),
            "inputs": {k: {**vars(v), "shape": list(v.shape)} for k, v in self.inputs.items()},
            "quick": self.quick,
            "timing": vars(self.timing),
            "load": None if self.load is None else {**vars(self.load), "users": list(self.load.users)},
            "variants": list(self.variants),
            "recipes": list(self.recipes),
            "cache_dir": str(self.cache_dir) if self.cache_dir else None,
        }
