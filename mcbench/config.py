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
    model: Path | None = None  # None: the built-in digits demo
    inputs: dict[str, InputOverride] = field(default_factory=dict)  # --input NAME=...
    out_dir: Path | None = None
    quick: bool = False
    timing: TimingPlan = TimingPlan()
    load: LoadPlan | None = LoadPlan()  # None: no HTTP load test
    variants: tuple[str, ...] = ()  # empty: all default variants

    @classmethod
    def quick_mode(cls, **kwargs) -> RunConfig:
        return cls(quick=True, timing=QUICK_PLAN, load=QUICK_LOAD, **kwargs)

    def to_dict(self) -> dict:
        return {
            "model": str(self.model) if self.model else None,
            "inputs": {k: {**vars(v), "shape": list(v.shape)} for k, v in self.inputs.items()},
            "quick": self.quick,
            "timing": vars(self.timing),
            "load": None if self.load is None else {**vars(self.load), "users": list(self.load.users)},
            "variants": list(self.variants),
        }
