"""One schema for a run's settings: each field of a config dataclass is declared once, and the rest derives from it.

A field of `bench.latency.TimingPlan`, `mcbench.config.LoadPlan` or `mcbench.config.RunConfig` is declared
with `setting(default, help=..., ...)`: its type is the annotation; its default, help text, range or choices,
run-file key and command-line flag are arguments. From that one declaration come:

- validation at construction (`validate`, called from `__post_init__`), whose errors name the field:
  `ConfigError("must be positive, got -1.0", key="load.step_seconds")`;
- the run file's keys and their checks (`mcbench.config_file`);
- the flags of `mcbench run` and `mcbench load` (`mcbench.config_flags`);
- the `config` a results.json records and `--resume` reads back (`to_json`, `from_json`).

Standard library only (and the root of user errors), so that every layer can declare settings.
"""

from __future__ import annotations

import dataclasses
import functools
import math
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


def _without_none(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not NoneType]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


# --- validation ----------------------------------------------------------------------------------------------


def validate(obj: Any) -> None:
    """Check (and normalise: list -> tuple, int -> float, str -> Path) every declared field of `obj` in place.

    For a frozen dataclass's `__post_init__`; raises ConfigError naming the field's path.
    """
    for f in fields_of(type(obj)):
        value = getattr(obj, f.name)
        try:
            new = convert(f, value)
        except Invalid as exc:
            raise ConfigError(str(exc), f.path) from None
        if new is not value:
            object.__setattr__(obj, f.name, new)


def convert(f: Field, value: Any) -> Any:
    """`value` as the field holds it, after its type, range, choices and check; else Invalid(problem)."""
    if value is None:
        if f.optional:
            return None
        raise Invalid(f"expected {_noun(f)}, got nothing")
    if f.nested is not None or dataclasses.is_dataclass(f.type):
        if not isinstance(value, f.type):
            raise Invalid(f"expected a {f.type.__name__}, got {described(value)}")
        return value
    origin = typing.get_origin(f.type)
    if origin is tuple:
        value = _convert_list(f, value)
    elif origin is dict or f.type is dict:
        if not isinstance(value, Mapping):
            raise Invalid(f"expected a table, got {described(value)}")
    else:
        value = _scalar(f.type, value)
        problem = _bounds_problem(f.setting, value)
        if problem:
            raise Invalid(problem)
    if f.setting.check is not None:
        try:
            f.setting.check(value)
        except (ValueError, UserError) as exc:  # a check may raise the user error its own parser raises
            raise Invalid(str(exc)) from None
    return value


def user_value(f: Field, raw: Any) -> Any:
    """A value as a run file or a flag gives it (`none`, then `parse`), converted; Invalid or the parser's error."""
    if f.setting.none is not UNSET and _same(raw, f.setting.none):
        return None
    if f.setting.parse is not None:
        raw = f.setting.parse(raw)
    return convert(f, raw)


def _same(raw: Any, none: Any) -> bool:
    if isinstance(none, bool) or isinstance(raw, bool):
        return raw is none
    if isinstance(none, int | float) and isinstance(raw, int | float):
        return raw == none
    return False


_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", tuple: "a list",
          dict: "a table"}


def described(value: Any) -> str:
    """`a string 'ten'`: a value with its TOML type, for an error."""
    return f"{_NAMES.get(type(value), type(value).__name__)} {value!r}"


def _noun(f: Field) -> str:
    if typing.get_origin(f.type) is tuple:
        return "a list"
    return {Path: "a path"}.get(f.type) or _NAMES.get(f.type, f"a {getattr(f.type, '__name__', f.type)}")


def _scalar(tp: Any, value: Any) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise Invalid(f"expected a boolean, got {described(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {described(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"expected a number, got {described(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise NotFinite(f"expected a finite number, got {value!r}") from None
        if not math.isfinite(number):
            raise NotFinite(f"expected a finite number, got {value!r}")
        return number
    if tp is Path:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str):
            raise Invalid(f"expected a path, got {described(value)}")
        if not value:
            raise Invalid("expected a path, got an empty string")
        return Path(value)
    if tp is str:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {described(value)}")
        if not value:
            raise Invalid("expected a non-empty string, got ''")
        return value
    raise TypeError(f"a setting of type {tp!r} needs its own parse and check")


def choices_of(s: Setting) -> tuple[str, ...] | None:
    return s.choices() if callable(s.choices) else s.choices


def _bounds_problem(s: Setting, value: Any) -> str | None:
    """What is wrong with a scalar against the setting's choices, range and upper bound; None if nothing."""
    return _range_problem(s, value) or _most_problem(s, value)


def _range_problem(s: Setting, value: Any) -> str | None:
    choices = choices_of(s)
    if choices is not None and value not in choices:
        return f"{value!r} is not one of {', '.join(map(str, choices))}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low_bad = (s.ge is not None and value < s.ge) or (s.gt is not None and value <= s.gt)
    high_bad = (s.le is not None and value > s.le) or (s.lt is not None and value >= s.lt)
    low = s.ge if s.ge is not None else s.gt
    high = s.le if s.le is not None else s.lt
    if (low_bad or high_bad) and low is not None and high is not None:
        unit = f" {s.unit}" if s.unit else ""
        return f"must be between {low:g} and {high:g}{unit}, got {value!r}"
    if low_bad:
        if s.gt == 0:
            return f"must be positive, got {value!r}"
        if s.ge == 0:
            return f"must not be negative, got {value!r}"
        return f"must be at least {s.ge:g}, got {value!r}" if s.ge is not None else \
            f"must be greater than {s.gt:g}, got {value!r}"
    if high_bad:
        return f"must be at most {s.le:g}, got {value!r}" if s.le is not None else \
            f"must be below {s.lt:g}, got {value!r}"
    return None


def _most_problem(s: Setting, value: Any) -> str | None:
    if s.most is not None and not isinstance(value, bool) and isinstance(value, int | float) and value > s.most:
        return f"must be at most {s.most:g}, got {value:.6g}"
    return None


def items_noun(f: Field) -> str:
    """`a non-empty list of positive integers`: what a list setting takes, for an error or a flag's help."""
    item, s = f.item_type, f.setting
    positive = (s.gt is not None and s.gt >= 0) or (s.ge is not None and s.ge > 0)
    words = {int: "integers", float: "numbers", str: "non-empty strings"}.get(item, "values")
    if positive and item in (int, float):
        words = f"positive {words}"
    return f"a {'non-empty ' if s.nonempty else ''}list of {words}"


def _convert_list(f: Field, value: Any) -> tuple:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise Invalid(f"expected a list, got {described(value)}")
    noun = items_noun(f)
    items = []
    for item in value:
        try:
            items.append(_scalar(f.item_type, item))
        except NotFinite:
            raise
        except Invalid:
            raise Invalid(f"expected {noun}, got {described(item)}") from None
    if f.setting.nonempty and not items:
        raise Invalid(f"expected {noun}, got []")
    for item in items:
        if _range_problem(f.setting, item):
            raise Invalid(f"expected {noun}, got {list(value)!r}")
        problem = _most_problem(f.setting, item)
        if problem:
            raise Invalid(problem)
    return tuple(items)


# --- results.json: to_json / from_json -------------------------------------------------------------------------


def to_json(obj: Any) -> dict[str, Any]:
    """The recorded fields of a config object as JSON values (paths as text, tuples as lists, plans as tables)."""
    return {f.name: _json(getattr(obj, f.name)) for f in fields_of(type(obj)) if f.setting.recorded}


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        if has_settings(type(value)):
            return to_json(value)
        return {f.name: _json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    raise TypeError(f"cannot record a {type(value).__name__} in results.json")


def from_json(cls: type, data: Mapping[str, Any], top: bool = True) -> Any:
    """`to_json`'s inverse. A key the class does not know is an error; a missing one takes the field's `legacy`
    value, else (in a nested plan) its default, else (at the top) is an error: the record is not this config's.
    Raises KeyError, TypeError or ConfigError."""
    if not isinstance(data, Mapping):
        raise TypeError(f"expected a table for {cls.__name__}, got {described(data)}")
    fields = {f.name: f for f in fields_of(cls) if f.setting.recorded}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise KeyError(f"{cls.__name__} has no setting {unknown[0]!r}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.setting.legacy is not UNSET:
                kwargs[name] = f.setting.legacy
            elif top:
                raise KeyError(name)
            continue
        value = data[name]
        if value is not None and f.setting.load is not None:
            value = f.setting.load(value)
        elif value is not None and f.nested is not None:
            value = from_json(f.nested, value, top=False)
        kwargs[name] = value
    return cls(**kwargs)


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
