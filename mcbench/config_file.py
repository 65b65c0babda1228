"""`mcbench run --config run.toml`: a run's arguments in a file, parsed (TOML), never executed.

A thin reader: the keys, their types, ranges and checks all come from the config dataclasses (the
schema in mcbench.config and bench.latency; `keys_table()` lists them). Strict on purpose: an unknown
key, a wrong type, an out-of-range number, an unknown task or profile is refused with the file and
the key path (`run.toml: key 'load.users': ...`) before any work starts or any folder is made. Paths
in the file are relative to the file's folder. Command-line flags override the file.

    model = "model.onnx"            # or a Hugging Face folder, or "package.module:factory"
    inputs = ["x=1,3,224,224"]      # as --input
    time_budget = 240               # as --time-budget (0: no limit; TOML has no null)
    cache_dir = false               # as --no-cache

    [search]                        # RunConfig.search_exclude / search_add
    exclude = ["ov-*"]

    [timing]                        # bench.latency.TimingPlan
    min_runs = 100

    [load]                          # mcbench.config.LoadPlan; enabled = false is --no-load
    users = [1, 2, 4, 8]
    check_every = 10

Every key, its flag, type, range and default: `python -m mcbench.config_file` (the table in docs/run-files.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError
from mcbench.base.files import FileError, read_text
from mcbench.base.parsing import ParseError, toml_data
from mcbench.base.settings import UNSET, Field, Invalid, all_fields, choices_of
from mcbench.base.settings_check import described, items_noun, user_value
from mcbench.config import ConfigError, RunConfig


@dataclass
class RunFile:
    """What a run file sets: field path ("seq_len", "load.users"; "load" None for `enabled = false`) -> value."""

    source: str
    values: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # field path -> the key the file wrote it under
    code: dict[str, str] = field(default_factory=dict)  # field path -> the text that would run code
    noun: str = "key"  # what errors call a key: "keyword" for mcbench.run's

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.noun} {key!r}: {problem}")

    def error(self, exc: ConfigError) -> ConfigError:
        """A schema error (`exc.key` a field path) in the file's terms: `FILE: key 'time_budget': problem`."""
        if exc.key in self.keys:
            return self.fail(self.keys[exc.key], exc.problem)
        if exc.key and any(path.startswith(f"{exc.key}.") for path in self.keys):  # a rule between a table's keys
            return self.fail(exc.key, exc.problem)
        return ConfigError(f"{self.source}: {exc}")


@dataclass(frozen=True)
class Entry:
    """One key a run file takes: a field, or the switch of an optional table (`load.enabled`)."""

    key: str
    field: Field
    switch: bool = False


@cache
def entries() -> dict[str, Entry]:
    """Every key a run file takes, derived from the schema: top-level keys, then `table.key` for tables."""
    out: dict[str, Entry] = {}
    for f in all_fields(RunConfig):
        if f.nested is not None:
            if f.setting.switch:
                out[f"{f.key}.{f.setting.switch}"] = Entry(f"{f.key}.{f.setting.switch}", f, switch=True)
            continue
        out[f.key] = Entry(f.key, f)
    return out


def _tables() -> dict[str, list[str]]:
    """Table name -> its keys in declaration order."""
    tables: dict[str, list[str]] = {}
    for key in entries():
        if "." in key:
            table, sub = key.split(".", 1)
            tables.setdefault(table, []).append(sub)
    return tables


def _read(rf: RunFile, entry: Entry, raw: Any, base: Path) -> None:
    f = entry.field
    if entry.switch:
        if not isinstance(raw, bool):
            raise rf.fail(entry.key, f"expected a boolean, got {described(raw)}")
        if not raw:
            rf.values[f.path] = None
        return
    try:
        value = user_value(f, raw)
    except (Invalid, ValueError, UserError) as exc:  # a parser's own error (IntakeError for inputs) names it too
        raise rf.fail(entry.key, getattr(exc, "problem", None) or str(exc)) from None
    if isinstance(value, Path):  # a path in the file is relative to the file's folder
        value = base / value
    if value is not None and f.setting.resolve is not None:
        try:
            value = f.setting.resolve(value, base, entry.key)
        except ConfigError as exc:
            raise rf.fail(exc.key or entry.key, exc.problem) from None
    if value is not None and f.setting.runs_code is not None and f.setting.runs_code(value):
        rf.code[f.path] = value if isinstance(value, str) else "true"
    rf.values[f.path] = value
    rf.keys[f.path] = entry.key


def load_run_file(path: Path) -> RunFile:
    """The validated run file; every problem is a ConfigError `FILE: key 'K': problem`."""
    path = Path(path)
    return read_settings(read_toml(path), str(path), path.parent)


def read_settings(data: Mapping[str, Any], source: str, base: Path, noun: str = "key") -> RunFile:
    """Settings given as a run file's keys (tables as dicts), each read as the file reads it: the schema's
    conversion, range and checks, paths relative to `base`. `mcbench.run`'s keywords come this way too."""
    rf = RunFile(source=source, noun=noun)
    known, tables = entries(), _tables()
    top = sorted({k.split(".", 1)[0] for k in known})
    for key, value in data.items():
        if key in tables:
            if not isinstance(value, dict):
                raise rf.fail(key, f"expected a table, got {described(value)}")
            for sub, item in value.items():
                if sub not in tables[key]:
                    raise rf.fail(f"{key}.{sub}", f"unknown key (known: {', '.join(tables[key])})")
                _read(rf, known[f"{key}.{sub}"], item, base)
        elif key in known:
            _read(rf, known[key], value, base)
        else:
            raise rf.fail(key, f"unknown key (known: {', '.join(top)})")
    return rf


def refuse_code(rf: RunFile, allowed: bool, overridden: set[str]) -> None:
    """A ConfigError unless the run file names no code or `--allow-code` was given: reading a file never imports it.

    `overridden` are the field paths the command line sets itself, so the file's value is not used.
    """
    named = {k: v for k, v in rf.code.items() if k not in overridden}
    if named and not allowed:
        path, text = next(iter(named.items()))
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise rf.fail(rf.keys[path], f"{shown!r} would run code; a run file may name code only with --allow-code "
                                     "(or give it on the command line)")


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed file; a missing, huge, non-UTF-8 or malformed file (or no regular file) is a ConfigError naming it."""
    try:
        return toml_data(read_text(path, "run file"), str(path))
    except (FileError, ParseError) as exc:
        raise ConfigError(str(exc)) from None


# --- the table of keys in docs/run-files.md, generated from the schema ------------------------------------------


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _kind(f: Field) -> str:
    """`number > 0, <= 3,600`: a key's type and range, as the table shows it."""
    s = f.setting
    if f.item_type is not None:
        text = items_noun(f).removeprefix("a ")
    elif f.name in ("inputs", "consts"):
        text = "list of strings or table"
    elif f.type is str and s.parse is not None:  # quality_budget: points may be given as a number
        text = "string or number"
    else:
        text = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path"}.get(f.type, "table")
    choices = choices_of(s)
    if choices:
        text = " \\| ".join(f'"{c}"' for c in choices)
    lower = [] if f.item_type is not None and "positive" in text else \
        [f"{op} {_number(v)}" for op, v in ((">=", s.ge), (">", s.gt)) if v is not None]
    upper = [f"{op} {_number(v)}" for op, v in (("<=", s.le), ("<", s.lt), ("<=", s.most)) if v is not None]
    if lower or upper:
        text += (" each " if f.item_type is not None else " ") + ", ".join(lower + upper)
    if s.unit:
        text += f" ({s.unit})"
    if s.none is not UNSET:
        text += f"; `{str(s.none).lower()}`: none"
    return text


def _default(f: Field) -> str:
    if f.setting.shown:
        return f.setting.shown
    value = f.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)
                                for v in value) + "]`"
    if isinstance(value, dict):
        return "`[]`" if not value else str(value)
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{_number(value)}`" if isinstance(value, float) else f"`{value}`"


def keys_table() -> str:
    """Every run-file key as a Markdown table: key, flag, type and range, default, meaning (docs/run-files.md)."""
    rows = ["| key | flag | type and range | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for key, entry in entries().items():
        f = entry.field
        if entry.switch:
            off = f" / `{f.setting.off_flag}`" if f.setting.off_flag else ""
            rows.append(f"| `{key}` | {off.removeprefix(' / ') or ''} | boolean | `true` | "
                        f"`false`: no {f.setting.help.split(':')[0].removeprefix('the ')} |")
            continue
        flags = " / ".join(f"`{x}`" for x in (f.setting.flag, f.setting.off_flag) if x)
        meaning = f.setting.help.replace("|", "\\|")
        if f.setting.runs_code is not None:
            meaning += " (names code: needs `--allow-code`)"
        rows.append(f"| `{key}` | {flags} | {_kind(f)} | {_default(f)} | {meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m mcbench.config_file: the table for docs/run-files.md
    print(keys_table(), end="")
