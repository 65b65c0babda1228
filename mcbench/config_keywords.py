"""`mcbench.run`'s keywords: a run file's keys as Python arguments, read by the same schema.

Every key a run file takes (`python -m mcbench.config_file`, the table in docs/run-files.md) is a keyword, and a
table is a dict: `mcbench.run(model, time_budget=600, load={"users": [1, 4]}, search={"exclude": ["ov-*"]})`.
Each value is converted and checked as the file's would be (mcbench.config_file.read_settings), so an error names
the keyword: `mcbench.run: keyword 'time_budget': expected a number, got a string '60'`. What a Python caller
writes more naturally is taken too, and nothing else:

- None is the default, as a keyword left out (`time_budget=None`); a setting's "none" is what the file writes
  for it (`time_budget=0`, `cache_dir=False`);
- a string where a list of strings is expected is one item (`variants="ort-fp32"`), never its characters;
- a table that can be switched off takes a boolean for its switch (`load=False` is `[load] enabled = false`);
- a path where a string is expected is its text (`model=Path("m.onnx")`); paths are relative to the current folder.

Code the caller names (a `package.module:factory` model, a metric) is the caller's own: no `allow_code` here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcbench.base.settings import Field
from mcbench.config import ConfigError
from mcbench.config_file import RunFile, entries, read_settings

SOURCE = "mcbench.run"


def keywords() -> list[str]:
    """The keywords `mcbench.run` takes: the run file's top-level keys and tables."""
    return sorted({key.split(".", 1)[0] for key in entries()})


def read_keywords(settings: Mapping[str, Any], source: str = SOURCE) -> RunFile:
    """The settings `mcbench.run(**settings)` gives (field path -> value), read as a run file's keys; an unknown
    keyword, or a value its setting refuses, is a ConfigError naming the keyword (and `source`, the function)."""
    known = keywords()
    for name in settings:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"{source}: unknown keyword {name!r} ({hint})")
    data = {}
    for name, value in settings.items():
        value = _table(name, value) if _is_table(name) else _value(entries()[name].field, value)
        if value is not None:
            data[name] = value
    return read_settings(data, source, Path(), noun="keyword")


def read_load_keywords(settings: Mapping[str, Any], quick: bool) -> Any:
    """The LoadPlan `mcbench.load(**settings)` gives: the run file's `[load]` keys as keywords, over the defaults
    (`--quick`'s with `quick`); an error names the keyword as the caller wrote it (`users`, not `load.users`)."""
    from mcbench.config import apply, defaults

    try:
        given = read_keywords({"load": dict(settings)} if settings else {}, source="mcbench.load")
        return apply(defaults(quick=quick), given.values).load
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("keyword 'load.", "keyword '")) from None


def _is_table(name: str) -> bool:
    return name not in entries()


def _table(name: str, value: Any) -> Any:
    """A table's dict with each value as `_value` takes it; a boolean for a switched table (`load=False`)."""
    switch = next((e.key for e in entries().values() if e.switch and e.key.startswith(f"{name}.")), None)
    if isinstance(value, bool) and switch is not None:
        return {switch.split(".", 1)[1]: value}
    if not isinstance(value, Mapping):
        return value  # read_settings says what it expected
    known = entries()
    table = {key: _value(known[f"{name}.{key}"].field, item) if f"{name}.{key}" in known else item
             for key, item in value.items()}
    return {key: item for key, item in table.items() if item is not None} or None


def _value(f: Field, value: Any) -> Any:
    if isinstance(value, str) and (f.item_type is str or f.setting.repeat):
        return [value]
    if isinstance(value, Path) and f.type is str:
        return str(value)
    return value
