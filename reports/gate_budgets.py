"""The gate's budgets file: TOML, parsed by the one safe parse (never executed), validated on load.

Every error names the file, the key and the problem, so a typo such as `p95_ms` fails the CI job with a line the
author can fix, instead of a budget that silently never applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError
from mcbench.base.files import FileError, read_text
from mcbench.base.parsing import ParseError, toml_data

METRICS = ("p50_ms", "p99_ms", "load_p99_ms", "min_throughput_rps", "min_accuracy", "max_size_bytes")
MIN_RESAMPLES, MAX_RESAMPLES = 100, 100_000  # bootstrap resamples: more buys no precision, only minutes
MAX_ROUNDS_FACTOR = 10  # --remeasure N adds rounds up to this many times N: with N <= 1000, 10,000 rounds at most
LOWER_BOUNDS = ("min_throughput_rps", "min_accuracy")  # the value must reach these; the others are ceilings


class GateConfigError(UserError):
    """A budgets file that cannot be used; the gate exits 2 before evaluating anything."""


@dataclass(frozen=True)
class Defaults:
    """How sure the gate must be before it calls a change a regression."""

    min_effect: float = 0.05  # a regression must be at least 5% slower...
    confidence: float = 0.95  # ...and its bootstrap CI of the ratio of medians must exclude 1
    max_cv: float = 0.5  # noisier than this (robust CV) and the decision hinges on it -> inconclusive
    resamples: int = 2000
    seed: int = 0
    max_rounds_factor: int = 3  # --remeasure N: up to this many times N rounds (at most MAX_ROUNDS_FACTOR) while a
    # min_effect slowdown is open


@dataclass(frozen=True)
class Budget:
    """Limits for every variant whose name matches `variant` (fnmatch), optionally only in one hardware profile."""

    variant: str
    limits: dict[str, float]
    profile: str | None = None
    users: int | None = None


@dataclass(frozen=True)
class GateConfig:
    defaults: Defaults = field(default_factory=Defaults)
    budgets: tuple[Budget, ...] = ()


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateConfigError(f"{where}: key {key!r}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise GateConfigError(f"{where}: key {key!r}: expected a finite number, got {value!r}")
    if value < 0:
        raise GateConfigError(f"{where}: key {key!r}: must not be negative, got {value!r}")
    return float(value)


def _defaults(where: str, table: Any) -> Defaults:
    if not isinstance(table, dict):
        raise GateConfigError(f"{where}: [defaults] must be a table")
    known = Defaults.__dataclass_fields__
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise GateConfigError(f"{where}: [defaults]: unknown key {key!r} (known: {', '.join(known)})")
        number = _number(f"{where}: [defaults]", key, value)
        if key in ("resamples", "seed", "max_rounds_factor"):
            if number != int(number) or (key == "resamples" and not MIN_RESAMPLES <= number <= MAX_RESAMPLES):
                raise GateConfigError(f"{where}: [defaults]: key {key!r}: expected a whole number "
                                      f"(resamples from {MIN_RESAMPLES} to {MAX_RESAMPLES})")
            number = int(number)
        values[key] = number
    d = Defaults(**values)
    if d.max_rounds_factor < 1:
        raise GateConfigError(f"{where}: [defaults]: key 'max_rounds_factor': at least 1 (1: never add rounds), "
                              f"got {d.max_rounds_factor}")
    if d.max_rounds_factor > MAX_ROUNDS_FACTOR:
        raise GateConfigError(f"{where}: [defaults]: key 'max_rounds_factor': must be at most {MAX_ROUNDS_FACTOR}, "
                              f"got {d.max_rounds_factor}")
    if not 0 < d.confidence < 1:
        raise GateConfigError(f"{where}: [defaults]: key 'confidence': must be between 0 and 1, got {d.confidence}")
    if d.max_cv == 0:
        raise GateConfigError(f"{where}: [defaults]: key 'max_cv': must be positive")
    return d


def _budget(where: str, table: Any) -> Budget:
    if not isinstance(table, dict):
        raise GateConfigError(f"{where}: must be a table")
    if not isinstance(table.get("variant"), str) or not table["variant"]:
        raise GateConfigError(f"{where}: key 'variant': required, a name or fnmatch pattern such as \"ort-*\"")
    profile = table.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise GateConfigError(f"{where}: key 'profile': expected a string, got {profile!r}")
    limits: dict[str, float] = {}
    for key, value in table.items():
        if key in ("variant", "profile", "users"):
            continue
        if key not in METRICS:
            raise GateConfigError(f"{where}: unknown metric {key!r} (known: variant, profile, users, "
                                  f"{', '.join(METRICS)})")
        limits[key] = _number(where, key, value)
    if not limits:
        raise GateConfigError(f"{where}: names no metric (one of {', '.join(METRICS)})")
    users = table.get("users")
    if users is not None:
        if isinstance(users, bool) or not isinstance(users, int) or users < 1:
            raise GateConfigError(f"{where}: key 'users': expected a positive whole number, got {users!r}")
        if "load_p99_ms" not in limits:
            raise GateConfigError(f"{where}: key 'users': only applies with 'load_p99_ms'")
    elif "load_p99_ms" in limits:
        raise GateConfigError(f"{where}: key 'load_p99_ms': needs 'users', the load step it applies to")
    return Budget(table["variant"], limits, profile, users)


def parse_budgets(text: str, source: str = "<budgets>") -> GateConfig:
    try:
        data = toml_data(text, source)
    except ParseError as exc:
        raise GateConfigError(str(exc)) from None
    unknown = set(data) - {"defaults", "budget"}
    if unknown:
        raise GateConfigError(f"{source}: unknown key {sorted(unknown)[0]!r} (known: [defaults], [[budget]])")
    defaults = _defaults(source, data.get("defaults", {}))
    tables = data.get("budget", [])
    if not isinstance(tables, list):
        raise GateConfigError(f"{source}: 'budget' must be an array of tables, written [[budget]]")
    budgets = tuple(_budget(f"{source}: [[budget]] #{i + 1}", t) for i, t in enumerate(tables))
    return GateConfig(defaults, budgets)


def load_budgets(path: Path) -> GateConfig:
    try:
        text = read_text(path, "budgets file")
    except FileError as exc:
        raise GateConfigError(str(exc)) from None
    return parse_budgets(text, str(path))
