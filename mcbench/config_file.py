"""`mcbench run --config run.toml`: a run's arguments in a file, parsed (TOML), never executed.

Strict on purpose: an unknown key, a wrong type, an out-of-range number, an unknown task or
profile is refused with the file and the key path (`run.toml: key 'load.users': ...`) before
any work starts or any folder is made. Paths in the file are relative to the file's folder.
Command-line flags override the file.

    model = "model.onnx"            # or a Hugging Face folder, or "package.module:factory"
    inputs = ["x=1,3,224,224"]      # as --input
    weights = "weights.safetensors"
    dataset = "val.npz"
    text_file = "sentences.txt"     # a Hugging Face text model's dataset, as --text-file (with labels = ...)
    seq_len = 128                   # as --seq-len
    task = "auto"                   # auto | classification | regression | embedding | fidelity
    metric = "mymetrics:f1"
    profiles = ["x86-avx2-4c"]
    out = "runs/resnet"
    quick = false
    trust_model = false
    variants = ["ort-fp32", "ort-int8-dynamic"]
    accuracy_budget = 1.0           # as --accuracy-budget
    quality_budget = "cosine_mean>=0.99"  # as --quality-budget: points, or METRIC>=X / METRIC<=X
    recipes = ["q=quant.int8_dynamic"]  # as --recipe: replaces the default variants
    time_budget = 240               # as --time-budget: seconds the search's stages may take (0: no limit)
    exhaustive = false              # as --exhaustive: every candidate through every stage

    [search]                        # narrow or extend the default run's search space
    exclude = ["ov-*"]              # candidate name patterns left out (never the baseline)
    add = ["pruned60=prune.structured(ratio=0.6) + export.onnx + quant.int8_static"]  # more candidates

    [timing]                        # bench.latency.TimingPlan
    warmup_runs = 10
    min_runs = 100
    min_seconds = 2.0
    max_seconds = 20.0
    settle_tolerance = 0.02

    [load]                          # mcbench.config.LoadPlan; enabled = false is --no-load
    enabled = true
    users = [1, 2, 4, 8]
    step_seconds = 10.0
    warmup_s = 2.0
    rates = [50.0, 100.0]           # open loop, req/s (default: fractions of the closed peak)
    arrivals = "poisson"
    budget_p99_ms = 100.0           # capacity figures: p99 budget, load to size for, replica cost
    max_batch = 1                   # > 1: also sweep with server dynamic batching
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcbench.config import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024

TIMING_KEYS = {"warmup_runs": int, "min_runs": int, "min_seconds": float, "max_seconds": float,
               "settle_tolerance": float}
LOAD_KEYS = {"enabled": bool, "users": list, "step_seconds": float, "warmup_s": float, "max_step_seconds": float,
             "rates": list, "arrivals": str, "budget_p99_ms": float, "target_rps": float, "cost_per_hour": float,
             "locust_workers": int, "max_batch": int, "max_wait_ms": float}
# The documented upper bound of every count and duration (README, Security): a run file cannot ask for a run that
# never ends. Seconds and milliseconds are wall time; counts are runs, users, workers or requests per second.
MAXIMA: dict[str, float] = {
    "timing.warmup_runs": 100_000, "timing.min_runs": 1_000_000, "timing.min_seconds": 3600.0,
    "timing.max_seconds": 3600.0, "load.users": 10_000, "load.step_seconds": 3600.0, "load.warmup_s": 3600.0,
    "load.max_step_seconds": 3600.0, "load.rates": 1_000_000.0, "load.budget_p99_ms": 3_600_000.0,
    "load.target_rps": 1e9, "load.cost_per_hour": 1e6, "load.locust_workers": 256, "load.max_batch": 4096,
    "load.max_wait_ms": 60_000.0,
}
TOP_KEYS = {"model", "inputs", "weights", "trust_model", "dataset", "task", "metric", "profiles", "out", "quick",
            "variants", "timing", "load", "recipes", "accuracy_budget", "text_file", "labels", "seq_len",
            "quality_budget", "time_budget", "exhaustive", "search"}


@dataclass
class RunFile:
    """What a run file sets; None (or empty) where it is silent, so the defaults or the flags decide."""

    source: str
    model: str | None = None
    inputs: list[str] = field(default_factory=list)
    weights: Path | None = None
    trust_model: bool | None = None
    dataset: Path | None = None
    task: str | None = None
    metric: str | None = None
    profiles: list[str] = field(default_factory=list)
    out: Path | None = None
    quick: bool | None = None
    variants: list[str] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    recipes: list[str] = field(default_factory=list)  # `[NAME=]RECIPE` texts, each validated
    accuracy_budget: float | None = None
    text_file: Path | None = None
    labels_file: Path | None = None
    seq_len: int | None = None
    quality_budget: str | None = None
    time_budget: float | None = None
    exhaustive: bool | None = None
    search: dict[str, list[str]] = field(default_factory=dict)
    code: dict[str, str] = field(default_factory=dict)  # keys that would run code: a factory, a metric, a pickle

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: key {key!r}: {problem}")


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _expect(rf: RunFile, key: str, value: Any, kind: type) -> Any:
    """`value` if it is of `kind` (an int is a fine float, a bool is never a number); else a ConfigError."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 1e300 else value
    if isinstance(value, float) and not math.isfinite(value):
        raise rf.fail(key, f"expected a finite number, got {value!r}")
    if kind is float and isinstance(value, float):
        return _bounded(rf, key, value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return _bounded(rf, key, value)
    if isinstance(value, bool) and kind is not bool:
        ok = False
    else:
        ok = isinstance(value, kind)
    if not ok:
        wanted = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
                  dict: "a table"}[kind]
        raise rf.fail(key, f"expected {wanted}, got {_type_name(value)} {value!r}")
    return value


def _bounded(rf: RunFile, key: str, value: float) -> Any:
    """`value` if it is within the key's documented upper bound (MAXIMA); keys without one pass unchanged."""
    limit = MAXIMA.get(key)
    if limit is not None and value > limit:
        raise rf.fail(key, f"must be at most {limit:g}, got {value:.6g}")
    return value


def _in_range(rf: RunFile, key: str, value: float, low: float, high: float, unit: str) -> Any:
    """`value` if low <= value <= high; else the key's error naming the range and its unit."""
    if not low <= value <= high:
        raise rf.fail(key, f"must be between {low:g} and {high:g} {unit}, got {value!r}")
    return value


def _strings(rf: RunFile, key: str, value: Any) -> list[str]:
    items = _expect(rf, key, value, list)
    for item in items:
        if not isinstance(item, str) or not item:
            raise rf.fail(key, f"expected a list of non-empty strings, got {_type_name(item)} {item!r}")
    return list(items)


def _path(rf: RunFile, key: str, value: Any, base: Path) -> Path:
    text = _expect(rf, key, value, str)
    if not text:
        raise rf.fail(key, "expected a path, got an empty string")
    return base / text


def _timing(rf: RunFile, table: Any) -> dict[str, Any]:
    table = _expect(rf, "timing", table, dict)
    out = {}
    for key, value in table.items():
        where = f"timing.{key}"
        if key not in TIMING_KEYS:
            raise rf.fail(where, f"unknown key (known: {', '.join(TIMING_KEYS)})")
        value = _expect(rf, where, value, TIMING_KEYS[key])
        if key in ("min_seconds", "max_seconds") and value <= 0:
            raise rf.fail(where, f"must be positive, got {value!r}")
        if key == "warmup_runs" and value < 0:
            raise rf.fail(where, f"must not be negative, got {value!r}")
        if key == "min_runs" and value < 2:
            raise rf.fail(where, f"must be at least 2, got {value!r}")
        if key == "settle_tolerance" and not 0 < value < 1:
            raise rf.fail(where, f"must be between 0 and 1, got {value!r}")
        out[key] = value
    return out


def _search(rf: RunFile, table: Any) -> dict[str, list[str]]:
    """[search]: `exclude` name patterns and `add` recipes, each recipe checked as --recipe is."""
    table = _expect(rf, "search", table, dict)
    out = {}
    for key, value in table.items():
        where = f"search.{key}"
        if key not in ("exclude", "add"):
            raise rf.fail(where, "unknown key (known: exclude, add)")
        out[key] = _strings(rf, where, value)
        if key == "add":
            out[key] = [_check_recipe(rf, f"{where}[{i}]", text) for i, text in enumerate(out[key])]
    return out


def _load(rf: RunFile, table: Any) -> dict[str, Any]:
    table = _expect(rf, "load", table, dict)
    out = {}
    for key, value in table.items():
        where = f"load.{key}"
        if key not in LOAD_KEYS:
            raise rf.fail(where, f"unknown key (known: {', '.join(LOAD_KEYS)})")
        value = _expect(rf, where, value, LOAD_KEYS[key])
        if key == "users":
            if not value or any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in value):
                raise rf.fail(where, f"expected a non-empty list of positive integers, got {value!r}")
            value = tuple(_bounded(rf, where, u) for u in value)
        if key == "rates":
            if not value or any(isinstance(r, bool) or not isinstance(r, (int, float)) or r <= 0 for r in value):
                raise rf.fail(where, f"expected a non-empty list of positive numbers, got {value!r}")
            value = tuple(_expect(rf, where, r, float) for r in value)
        if key == "arrivals" and value not in ("poisson", "constant"):
            raise rf.fail(where, f"must be 'poisson' or 'constant', got {value!r}")
        if key in ("locust_workers", "max_batch") and value < (1 if key == "max_batch" else 0):
            raise rf.fail(where, f"must be at least {1 if key == 'max_batch' else 0}, got {value!r}")
        if key in ("step_seconds", "max_step_seconds", "budget_p99_ms", "target_rps", "cost_per_hour",
                   "max_wait_ms") and value <= 0:
            raise rf.fail(where, f"must be positive, got {value!r}")
        if key == "warmup_s" and value < 0:
            raise rf.fail(where, f"must not be negative, got {value!r}")
        out[key] = value
    return out


def _check_task(rf: RunFile, task: str) -> str:
    from mcbench.bench.metrics import AUTO, TASKS

    if task not in (*TASKS, AUTO):
        raise rf.fail("task", f"{task!r} is not one of {', '.join((*TASKS, AUTO))}")
    return task


def _check_profiles(rf: RunFile, names: list[str], base: Path) -> list[str]:
    """Each profile resolves now (a shipped name or a .toml beside the run file), so a typo costs nothing."""
    from mcbench.optimizer.profiles import ProfileError, find_profile

    resolved = []
    for name in names:
        ref = str(base / name) if name.endswith(".toml") else name
        try:
            find_profile(ref)
        except ProfileError as exc:
            raise rf.fail("profiles", str(exc)) from None
        resolved.append(ref)
    return resolved


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed file; a missing, huge, non-UTF-8 or malformed file is a ConfigError naming it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if not path.is_file():
        raise ConfigError(f"{path}: not a file")
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size} bytes is too large for a run file (at most {MAX_CONFIG_BYTES})")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a usable run file (arrays or tables nested too deeply)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def load_run_file(path: Path) -> RunFile:
    """The validated run file; every problem is a ConfigError `FILE: key 'K': problem`."""
    path = Path(path)
    data = read_toml(path)
    rf = RunFile(source=str(path))
    base = path.parent
    for key, value in data.items():
        if key not in TOP_KEYS:
            raise rf.fail(key, f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")
        if key == "model":
            text = _expect(rf, key, value, str)
            factory = ":" in text and not text.endswith((".onnx", ".pt", ".pt2"))
            rf.model = text if factory else str(base / text)
            if factory:
                rf.code[key] = text
        elif key in ("inputs", "variants"):
            setattr(rf, key, _strings(rf, key, value))
        elif key == "profiles":
            rf.profiles = _check_profiles(rf, _strings(rf, key, value), base)
        elif key in ("weights", "dataset", "out", "text_file"):
            setattr(rf, key, _path(rf, key, value, base))
        elif key == "labels":
            rf.labels_file = _path(rf, key, value, base)
        elif key == "quality_budget":
            rf.quality_budget = _check_quality_budget(rf, value)
        elif key == "seq_len":
            rf.seq_len = _in_range(rf, key, _expect(rf, key, value, int), 1, 8192, "tokens")
        elif key == "time_budget":
            rf.time_budget = _in_range(rf, key, _expect(rf, key, value, float), 0, 7 * 86400, "seconds")
        elif key in ("trust_model", "quick", "exhaustive"):
            setattr(rf, key, _expect(rf, key, value, bool))
            if key == "trust_model" and value:
                rf.code[key] = "true"
        elif key == "task":
            rf.task = _check_task(rf, _expect(rf, key, value, str))
        elif key == "metric":
            rf.metric = rf.code[key] = _expect(rf, key, value, str)
        elif key == "timing":
            rf.timing = _timing(rf, value)
        elif key == "load":
            rf.load = _load(rf, value)
        elif key == "accuracy_budget":
            rf.accuracy_budget = _in_range(rf, key, _expect(rf, key, value, float), 0, 100, "percentage points")
        elif key == "search":
            rf.search = _search(rf, value)
        elif key == "recipes":
            rf.recipes = [_check_recipe(rf, f"recipes[{i}]", text) for i, text in enumerate(_strings(rf, key, value))]
    return rf


def _check_quality_budget(rf: RunFile, value: Any) -> str:
    """A number (points) or a "METRIC>=X" / "METRIC<=X" string, read as --quality-budget reads it."""
    from mcbench.reports.quality import QualityBudgetError, parse_quality_budget

    text = str(_expect(rf, "quality_budget", value, float)) if isinstance(value, int | float) else \
        _expect(rf, "quality_budget", value, str)
    try:
        parse_quality_budget(text)
    except QualityBudgetError as exc:
        raise rf.fail("quality_budget", str(exc)) from None
    return text


def refuse_code(rf: RunFile, allowed: bool, overridden: set[str]) -> None:
    """A ConfigError unless the run file names no code or `--allow-code` was given: reading a file never imports it.

    `overridden` are the keys the command line sets itself, so the file's value is not used.
    """
    named = {k: v for k, v in rf.code.items() if k not in overridden}
    if named and not allowed:
        key, text = next(iter(named.items()))
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise rf.fail(key, f"{shown!r} would run code; a run file may name code only with --allow-code "
                           "(or give it on the command line)")


def _check_recipe(rf: RunFile, where: str, text: str) -> str:
    """The recipe as written (`[NAME=]RECIPE`), after parsing it (literals only) and binding each step to its pass."""
    from mcbench.optimizer.passes import bind_step
    from mcbench.optimizer.recipes import RecipeError, parse_named_recipe

    try:
        for step in parse_named_recipe(text).steps:
            bind_step(step)
    except RecipeError as exc:
        raise rf.fail(where, str(exc)) from None
    return text
