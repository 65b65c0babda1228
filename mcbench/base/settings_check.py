"""A setting's value checked and converted: type, range, choices, the field's own check, lists item by item.

`validate` runs in a config class's `__post_init__`; `user_value` reads a run file's or a flag's value
(`mcbench.config_file`, `mcbench.config_flags`). Problems are `Invalid(problem)`; `validate` names the field.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError
from mcbench.base.settings import UNSET, ConfigError, Field, Invalid, NotFinite, Setting, choices_of, fields_of


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
