"""One schema for a run's settings: each field of a config dataclass is declared once, and the rest derives from it.

A field of `bench.latency.TimingPlan`, `bench.load_plan.LoadPlan` or `mcbench.config.RunConfig` is declared
with `setting(default, help=..., ...)`: its type is the annotation; its default, help text, range or choices,
run-file key and command-line flag are arguments. From that one declaration come:

- validation at construction (`settings_check.validate`, called from `__post_init__`), whose errors name the
  field: `ConfigError("must be positive, got -1.0", key="load.step_seconds")`;
- the run file's keys and their checks (`mcbench.config_file`);
- the flags of `mcbench run` and `mcbench load` (`mcbench.config_flags`);
- the `config` a results.json records and `--resume` reads back (`settings_json`: `to_json`, `from_json`);
- the keywords of `mcbench.run` (`mcbench.config_file.read_settings`, as a run file's keys);
- the quick preset (`quick_preset`: each setting's `quick` value).

This module holds the declaration (`setting`, `Setting`), its reading (`Field`, `fields_of`), the errors and
`apply`. Standard library only (and the root of user errors), so that every layer can declare settings.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

from mcbench.base.errors import UserError

SETTING = "mcbench.setting"  # the key of a field's Setting in its metadata


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class ConfigError(UserError):
    """A run configuration that cannot be carried out; the message names the setting and what to change.

    `key` is the field's path (`load.step_seconds`; `load` for a rule between fields of the load plan; empty for
    one between the run's own fields); `problem` is the message without it.
    """

    def __init__(self, problem: str, key: str = "") -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.problem, self.key = problem, key


class Invalid(ValueError):
    """A value a setting does not take; the message is the problem alone (`must be positive, got -1.0`)."""


class NotFinite(Invalid):
    """inf or nan where a number is expected: said as it is, in a list too."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a field declares besides its type and default. Only `help` is required."""

    help: str
    key: str | None = None  # the run file's key, if not the field's name; dotted puts it in a table: "search.add"
    flag: str | None = None  # the command-line flag; None: none
    commands: tuple[str, ...] = ("run",)  # the commands that take the flag
    metavar: str | None = None
    repeat: bool = False  # a list given one flag per item (--input A --input B); else comma-separated
    off_flag: str | None = None  # a flag that sets the field to None (--no-load)
    off_help: str = ""  # its help
    switch: str | None = None  # a table key that turns an optional table off: `enabled = false` in [load]
    ge: float | None = None  # value (each item of a list) >= ge
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    most: float | None = None  # the documented upper bound on anything from outside (docs/reliability-and-security.md)
    unit: str = ""  # shown in a range's error: "must be between 1 and 8192 tokens"
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    nonempty: bool = False  # a list needs an item
    check: Callable[[Any], object] | None = None  # raises ValueError(problem) or a UserError for a value it refuses
    parse: Callable[[Any], Any] | None = None  # a run-file or flag value -> the field's value, before the checks
    resolve: Callable[[Any, Path, str], Any] | None = None  # run file only: (value, file's folder, key) -> value
    none: Any = UNSET  # the run-file or flag value that stands for None (TOML has no null): 0, false
    runs_code: Callable[[Any], bool] | None = None  # the value names code: a run file needs --allow-code
    recorded: bool = True  # kept in results.json's `config` (where the run's files went is not)
    legacy: Any = UNSET  # what a results file from before the field existed meant (else the key is required)
    load: Callable[[Any], Any] | None = None  # results.json's form -> the value, where the generic reading won't do
    quick: Any = UNSET  # the value under the quick preset (`--quick`, `quick = true`); UNSET: the default's
    shown: str = ""  # the default as the docs give it, where a `factory` computes it when a config is made


def setting(default: Any = UNSET, *, factory: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
    """A dataclass field with its Setting (see the module's docstring)."""
    metadata = {SETTING: Setting(**kwargs)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if default is UNSET:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Field:
    """One declared setting of a config class, with its resolved type."""

    name: str
    path: str  # what errors name: the class's SECTION and the field's name ("load.users"; "seq_len")
    key: str  # the run file's key, dotted from the top of the file ("load.users", "time_budget", "search.add")
    setting: Setting
    type: Any  # the annotation without `| None`
    optional: bool
    default: Any

    @property
    def nested(self) -> type | None:
        """The config class this field holds (RunConfig.timing: TimingPlan), or None."""
        return self.type if dataclasses.is_dataclass(self.type) and has_settings(self.type) else None

    @property
    def item_type(self) -> Any:
        """A list's item type (int for `tuple[int, ...]`), else None."""
        return typing.get_args(self.type)[0] if typing.get_origin(self.type) is tuple else None


def has_settings(cls: type) -> bool:
    return any(SETTING in f.metadata for f in dataclasses.fields(cls))


@functools.cache
def fields_of(cls: type) -> tuple[Field, ...]:
    """The declared settings of a config class, in declaration order (a field without a Setting is an error)."""
    hints = typing.get_type_hints(cls)
    section = getattr(cls, "SECTION", "")
    out = []
    for f in dataclasses.fields(cls):
        if SETTING not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting(...)")
        s: Setting = f.metadata[SETTING]
        tp, optional = _without_none(hints[f.name])
        own_key = s.key or f.name
        key = own_key if "." in own_key or not section else f"{section}.{own_key}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        path = f"{section}.{f.name}" if section else f.name
        out.append(Field(f.name, path, key, s, tp, optional, default))
    return tuple(out)


def all_fields(cls: type) -> list[Field]:
    """The settings of `cls` and of the config classes its fields hold, depth first (a nested plan after its field)."""
    out = []
    for f in fields_of(cls):
        out.append(f)
        if f.nested is not None:
            out.extend(all_fields(f.nested))
    return out


def quick_preset(cls: type) -> dict[str, Any]:
    """The quick preset of a config class: field path -> the `quick` value its settings declare."""
    return {f.path: f.setting.quick for f in all_fields(cls) if f.setting.quick is not UNSET}


def _without_none(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not NoneType]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def choices_of(s: Setting) -> tuple[str, ...] | None:
    return s.choices() if callable(s.choices) else s.choices


# --- applying changes ------------------------------------------------------------------------------------------


def apply(obj: Any, values: Mapping[str, Any]) -> Any:
    """`obj` with `values` (field path -> value: "seq_len", "load.users") applied, nested plans included.

    A nested plan set to None (`load`) drops the changes to its fields. Raises ConfigError naming the path.
    """
    changes = {}
    for f in fields_of(type(obj)):
        if f.path in values:
            changes[f.name] = values[f.path]
        if f.nested is not None:
            prefix = f"{getattr(f.nested, 'SECTION', f.name)}."
            sub = {p: v for p, v in values.items() if p.startswith(prefix)}
            current = changes.get(f.name, getattr(obj, f.name))
            if sub and current is not None:
                changes[f.name] = apply(current, sub)
    return dataclasses.replace(obj, **changes) if changes else obj
