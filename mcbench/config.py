"""The run configuration: what the CLI (or a caller) asks one `mcbench run` to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mcbench.bench.latency import QUICK_PLAN, TimingPlan
from mcbench.optimizer.intake import InputOverride


class ConfigError(ValueError):
    """A run configuration that cannot be carried out; the message says what to change."""


@dataclass(frozen=True)
class LoadPlan:
    """The two load sweeps and their rules.

    Closed loop: `users` concurrent users, one step each. Open loop: `rates` requests a second, or,
    where none are given, `rate_fractions` of the closed loop's peak throughput. Each step runs
    `step_seconds` (the first `warmup_s` not counted) and is extended up to `max_step_seconds` until
    its windows agree. A sweep stops at the first step past `budget_p99_ms` or with errors.
    """

    users: tuple[int, ...] = (1, 2, 4, 8)
    step_seconds: float = 4.0  # a step runs this long, then again while its windows disagree (bench.load.StepRules)
    warmup_s: float = 1.0
    max_step_seconds: float = 12.0
    rates: tuple[float, ...] = ()
    rate_fractions: tuple[float, ...] = (0.5, 0.7, 0.85, 1.0, 1.15)
    arrivals: str = "poisson"
    budget_p99_ms: float = 100.0  # used where no hardware profile gives capacity.latency_budget_ms
    target_rps: float | None = None  # likewise capacity.target_rps
    cost_per_hour: float | None = None  # likewise cost_per_hour (one replica)
    locust_workers: int = 0  # 0: one Locust process; N: a master and N worker processes
    check_every: int = 10  # compare every Nth answer with the variant's offline outputs
    max_batch: int = 1  # > 1: also run the sweeps with server dynamic batching, to compare
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if not self.users or any(u < 1 for u in self.users):
            raise ValueError(f"concurrency levels must be positive integers, got {list(self.users)}")
        if self.step_seconds <= self.warmup_s or self.warmup_s < 0:
            raise ValueError(f"a load step of {self.step_seconds} s must be longer than its {self.warmup_s} s warm-up")
        if any(r <= 0 for r in self.rates + self.rate_fractions):
            raise ValueError("arrival rates must be positive")
        if self.arrivals not in ("poisson", "constant"):
            raise ValueError(f"arrivals must be poisson or constant, got {self.arrivals!r}")
        if self.budget_p99_ms <= 0 or self.locust_workers < 0 or self.max_batch < 1:
            raise ValueError("the p99 budget must be positive, workers >= 0 and max batch >= 1")

    def open_rates(self, closed_peak_rps: float) -> list[float]:
        """The open loop's arrival rates: the given ones, or fractions of the closed loop's peak."""
        if self.rates:
            return list(self.rates)
        return [round(f * closed_peak_rps, 1) for f in self.rate_fractions if f * closed_peak_rps >= 1]


DEFAULT_TIME_BUDGET_S = 240.0  # sized so the demo's default run ends within 5 minutes on a 2-core machine
QUICK_TIME_BUDGET_S = 75.0
QUICK_LOAD = LoadPlan(users=(1, 4), step_seconds=3.0, warmup_s=0.5, max_step_seconds=3.0, rate_fractions=(0.5,))


@dataclass(frozen=True)
class RunConfig:
    model: str | None = None  # an .onnx/.pt2/.pt file or package.module:factory; None: the built-in demo
    inputs: dict[str, InputOverride] = field(default_factory=dict)  # --input NAME=...
    weights: Path | None = None  # a state_dict (weights_only) or .safetensors file for a factory
    trust_model: bool = False  # allow unpickling a full module
    dataset: Path | None = None  # .npz with one array per input plus labels
    task: str = "auto"  # classification | regression | embedding | fidelity; auto: decided on the outputs
    metric: str | None = None  # package.module:function(outputs, labels) -> float | dict
    profiles: tuple[str, ...] = ()  # hardware profile names or .toml paths; empty: this machine's defaults
    out_dir: Path | None = None
    quick: bool = False
    timing: TimingPlan = TimingPlan()
    load: LoadPlan | None = LoadPlan()  # None: no HTTP load test
    variants: tuple[str, ...] = ()  # empty: all default variants
    accuracy_budget: float = 1.0  # the most top-1 (or agreement) a shipped variant may lose, in percentage points
    recipes: tuple[str, ...] = ()  # `[NAME=]RECIPE` texts; non-empty: the baseline plus these, not the defaults
    cache_dir: Path | None = None  # where built artifacts are cached across runs; None: no cache
    seq_len: int = 128  # a Hugging Face text model's sequence length
    text_file: Path | None = None  # one text a line: the dataset of a Hugging Face text model, tokenised
    labels_file: Path | None = None  # one label a line for text_file (class id or name; a number for regression)
    quality_budget: str | None = None  # points on the task's metric, or METRIC>=X / METRIC<=X (reports.quality)
    time_budget_s: float | None = DEFAULT_TIME_BUDGET_S  # the search's stages (mcbench.search); None: no limit
    exhaustive: bool = False  # every candidate through every stage (what an explicit variant list always gets)
    search_exclude: tuple[str, ...] = ()  # candidate name patterns the search leaves out (run file [search])
    search_add: tuple[str, ...] = ()  # `[NAME=]RECIPE` candidates the search adds to its space (run file [search])


    def __post_init__(self) -> None:
        from mcbench.bench.metrics import AUTO, TASKS
        from mcbench.reports.quality import QualityBudgetError, parse_quality_budget

        if self.task not in (*TASKS, AUTO):
            raise ConfigError(f"--task {self.task!r} is not one of {', '.join((*TASKS, AUTO))}")
        if self.quality_budget is not None:
            try:
                spec = parse_quality_budget(self.quality_budget)
            except QualityBudgetError as exc:
                raise ConfigError(str(exc)) from None
            if spec.points is not None and self.task == "embedding":
                raise ConfigError(f"--quality-budget {self.quality_budget}: an embedding's budget is a floor on the "
                                  "cosine to the baseline: give it as cosine_mean>=X (default cosine_mean>=0.99)")
        if self.model is None and (self.inputs or self.weights or self.dataset):
            raise ConfigError("--input, --weights and --dataset describe a --model; the built-in demo needs none")
        if self.model is None and (self.text_file or self.labels_file):
            raise ConfigError("--text-file and --labels describe a Hugging Face --model folder; the demo needs none")
        if self.text_file and self.dataset:
            raise ConfigError("give either --text-file or --dataset, not both")
        if self.labels_file and not self.text_file:
            raise ConfigError("--labels goes with --text-file (a .npz dataset carries its own 'labels')")
        if not 1 <= self.seq_len <= 8192:
            raise ConfigError(f"--seq-len {self.seq_len} is not between 1 and 8192")
        if self.time_budget_s is not None and not 0 < self.time_budget_s <= 7 * 86400:
            raise ConfigError(f"--time-budget {self.time_budget_s:g} is not between 0 and a week of seconds")
        if not 0 <= self.accuracy_budget <= 100:
            raise ConfigError(f"--accuracy-budget {self.accuracy_budget} is not between 0 and 100 percentage points")

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

    @property
    def searches(self) -> bool:
        """Whether the run is a staged search; an explicit list (--variants, --recipe, --profile) runs in full."""
        return not (self.exhaustive or self.variants or self.recipes or self.profiles)

    @classmethod
    def quick_mode(cls, **kwargs) -> RunConfig:
        quick = {"quick": True, "timing": QUICK_PLAN, "load": QUICK_LOAD, "time_budget_s": QUICK_TIME_BUDGET_S}
        return cls(**{**quick, **kwargs})

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
            "load": None if self.load is None else {**vars(self.load), "users": list(self.load.users),
                                                    "rates": list(self.load.rates),
                                                    "rate_fractions": list(self.load.rate_fractions)},
            "variants": list(self.variants),
            "accuracy_budget": self.accuracy_budget,
            "recipes": list(self.recipes),
            "cache_dir": str(self.cache_dir) if self.cache_dir else None,
            "seq_len": self.seq_len,
            "text_file": str(self.text_file) if self.text_file else None,
            "labels_file": str(self.labels_file) if self.labels_file else None,
            "quality_budget": self.quality_budget,
            "time_budget_s": self.time_budget_s,
            "exhaustive": self.exhaustive,
            "search_exclude": list(self.search_exclude),
            "search_add": list(self.search_add),
        }


_TUPLES = ("users", "rates", "rate_fractions")


def config_from_dict(data: dict, source: str) -> RunConfig:
    """The RunConfig a results file recorded (RunConfig.to_dict's inverse), for `mcbench run --resume`."""
    from mcbench.bench.latency import TimingPlan

    try:
        load = data.get("load")
        return RunConfig(
            model=data["model"], weights=Path(data["weights"]) if data.get("weights") else None,
            trust_model=bool(data["trust_model"]), dataset=Path(data["dataset"]) if data.get("dataset") else None,
            task=data["task"], metric=data.get("metric"), profiles=tuple(data["profiles"]),
            inputs={k: InputOverride(**{**v, "shape": tuple(v["shape"])}) for k, v in data["inputs"].items()},
            quick=bool(data["quick"]), timing=TimingPlan(**data["timing"]),
            load=None if load is None else LoadPlan(**{**load, **{k: tuple(load[k]) for k in _TUPLES if k in load}}),
            variants=tuple(data["variants"]),
            accuracy_budget=float(data.get("accuracy_budget", 1.0)),
            recipes=tuple(data.get("recipes", ())),
            cache_dir=Path(data["cache_dir"]) if data.get("cache_dir") else None,
            seq_len=int(data.get("seq_len", 128)),
            text_file=Path(data["text_file"]) if data.get("text_file") else None,
            labels_file=Path(data["labels_file"]) if data.get("labels_file") else None,
            quality_budget=data.get("quality_budget"),
            time_budget_s=data.get("time_budget_s"),  # runs from before the search had none
            exhaustive=bool(data.get("exhaustive", True)),
            search_exclude=tuple(data.get("search_exclude", ())), search_add=tuple(data.get("search_add", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{source}: the recorded config cannot be read back ({type(exc).__name__}: {exc})") from None
