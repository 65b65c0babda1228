"""The command-line flags of a run's settings, generated from the schema (mcbench.base.settings, mcbench.config).

Each setting that declares a `flag` (and lists the command in its `commands`) becomes one argparse
argument whose `dest` is the field's name, `default` None (so "not given" is known), and whose help is
the setting's. Argparse parses the text (`expected a number, got 'ten'`); the setting's range and checks
apply when the config is built, and an error names the flag: `mcbench: --step-seconds: must be positive,
got -1.0`. A run file's keys derive from the same fields (mcbench.config_file).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mcbench.base.errors import UsageError
from mcbench.base.settings import ConfigError, Field, Invalid, all_fields, choices_of, fields_of
from mcbench.base.settings_check import user_value

DEFAULT_MAX_BATCH = 8  # --max-wait-ms without --max-batch


def off_dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _words(tp: Any) -> str:
    return {int: "integers", float: "numbers"}.get(tp, "values")


def _scalar_parser(tp: Any) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return tp(text)
        except ValueError:
            noun = {int: "an integer", float: "a number"}.get(tp, "a value")
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None

    parse.__name__ = getattr(tp, "__name__", "value")
    return parse


def _list_parser(tp: Any) -> Callable[[str], tuple]:
    """Comma-separated items: `1,2,4` -> (1, 2, 4); empty parts of a list of names are dropped."""
    def parse(text: str) -> tuple:
        parts = [p.strip() for p in text.split(",")]
        if tp is str:
            return tuple(p for p in parts if p)
        try:
            return tuple(tp(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {_words(tp)}, got {text!r}") from None

    parse.__name__ = "list"
    return parse


def _help(f: Field) -> str:
    text = f.setting.help
    default = f.default
    if "default" in text or default is None or default == () or default == {} or isinstance(default, bool):
        return text
    shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) if isinstance(default, tuple) \
        else f"{default:g}" if isinstance(default, float) else str(default)
    return f"{text} (default {shown})"


def add_flags(parser: argparse.ArgumentParser, command: str, cls: type, title: str | None = None) -> None:
    """A flag for each setting of `cls` that `command` takes; the plans it holds get one argument group each."""
    target = parser.add_argument_group(title) if title else parser
    nested = []
    for f in fields_of(cls):
        s = f.setting
        if s.off_flag and command in s.commands:
            target.add_argument(s.off_flag, action="store_true", dest=off_dest(s.off_flag), help=s.off_help)
        if f.nested is not None:
            nested.append(f)
        if not s.flag or command not in s.commands:
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": _help(f)}
        if s.metavar:
            kwargs["metavar"] = s.metavar
        choices = choices_of(s)
        if f.type is bool:
            kwargs["action"] = "store_true"
        elif s.repeat:
            kwargs.update(action="append", type=_scalar_parser(f.item_type or str))
        elif f.item_type is not None:
            kwargs["type"] = _list_parser(f.item_type)
        elif choices is not None:
            kwargs["choices"] = list(choices)
        elif f.type in (int, float, Path):
            kwargs["type"] = _scalar_parser(f.type)
        target.add_argument(s.flag, **kwargs)
    for f in nested:
        add_flags(parser, command, f.nested, title=f.setting.help)


def flag_of(cls: type, path: str) -> str | None:
    return next((f.setting.flag or f.setting.off_flag for f in all_fields(cls) if f.path == path), None)


def flag_values(args: argparse.Namespace, command: str, cls: type) -> dict[str, Any]:
    """The settings the command line gives: field path -> value (an off flag: None). A value a setting refuses
    is a UsageError naming the flag; a parser's own error (--input's IntakeError) passes unchanged."""
    values: dict[str, Any] = {}
    for f in all_fields(cls):
        s = f.setting
        if command not in s.commands:
            continue
        if s.off_flag and getattr(args, off_dest(s.off_flag), False):
            values[f.path] = None
            continue
        raw = getattr(args, f.name, None) if s.flag else None
        if raw is None or (f.type is bool and raw is False):
            continue
        try:
            values[f.path] = user_value(f, list(raw) if s.repeat else raw)
        except Invalid as exc:
            raise UsageError(f"{s.flag}: {exc}") from None
    return values


def flag_error(exc: ConfigError, cls: type, given: Mapping[str, Any]) -> UsageError:
    """A schema error in the command line's terms: `--step-seconds: must be positive, got -1.0`."""
    flag = flag_of(cls, exc.key) if exc.key in given else None
    return UsageError(f"{flag}: {exc.problem}" if flag else str(exc))


def sweep_rules(flags: dict[str, Any], underneath: Mapping[str, Any]) -> dict[str, Any]:
    """The flags' own rules for the load plan, over `underneath` (the plan's values below the flags, by name).

    --step-seconds caps the step's warm-up at a quarter of it and raises --max-step-seconds to it, unless
    those are given too; --max-wait-ms alone turns batching on with up to 8 requests.
    """
    out = dict(flags)
    step = flags.get("load.step_seconds")
    if step is not None:
        out.setdefault("load.warmup_s", min(underneath["warmup_s"], step / 4))
        out.setdefault("load.max_step_seconds", max(underneath["max_step_seconds"], step))
    if "load.max_wait_ms" in flags and "load.max_batch" not in flags and underneath["max_batch"] == 1:
        out["load.max_batch"] = DEFAULT_MAX_BATCH
    return out
