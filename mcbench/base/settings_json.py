"""Config objects to and from the `config` table of results.json, which `--resume` reads back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcbench.base.settings import UNSET, fields_of, has_settings
from mcbench.base.settings_check import described


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
