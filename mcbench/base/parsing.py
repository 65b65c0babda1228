"""Text from outside parsed into data: results files, budgets, hardware profiles, a model folder's config.json.

`json` and `tomllib` answer hostile text with exceptions no caller expects (RecursionError for a file nested
100k deep, ValueError for a 5,000-digit integer, UnicodeDecodeError for UTF-16) or with values that break
later arithmetic (`1e999` is infinity, `NaN` a float). Here each becomes one line, `SOURCE: what is wrong`,
raised as a ParseError (a UserError; a caller may say it as its own), and what parses is bounded: at most
MAX_DEPTH levels of nesting, integers of at most MAX_INT_DIGITS digits, and (JSON) finite numbers only. Standard
library and the error root only, so every package may use it.
"""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

from mcbench.base.errors import UserError

MAX_DEPTH = 64  # a results file nests about 8 deep, a model config 3
MAX_INT_DIGITS = 20  # every 64-bit integer, signed or not
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


class ParseError(UserError):
    """Text that does not parse, or parses to what no caller may take; the message names the source."""


class _Refused(ValueError):
    """Raised inside the parser's hooks; becomes a ParseError with the source named."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"holds an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"holds the number {text[:40]}, past the range of a float")
    return value


def _constant(name: str) -> float:
    raise _Refused(f"holds {name}, which is not a number JSON allows")


def _text(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data
    for bom, encoding in _BOMS.items():
        if data.startswith(bom):
            raise ParseError(f"{source}: is {encoding} text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{source}: not UTF-8 text (byte {exc.start})") from None


def depth(value: Any) -> int:
    """How deeply lists and dicts nest in `value` (a scalar: 0), counted without recursion.

    The walk keeps one iterator a level, never an entry per child: a 16 MiB config.json of `{},` holds 5.6 million
    objects, and a (child, level) pair for each took as much memory again as the parsed value (806 MiB in all)."""
    deepest, levels = 0, [iter((value,))]
    while levels:
        item = next(levels[-1], _END)
        if item is _END:
            levels.pop()
            continue
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, len(levels))
        if len(levels) <= MAX_DEPTH:
            levels.append(iter(children))
    return deepest


_END = object()


def _shallow(value: Any, source: str) -> Any:
    if depth(value) > MAX_DEPTH:
        raise ParseError(f"{source}: nested more than {MAX_DEPTH} levels deep")
    return value


def json_data(data: bytes | str, source: str) -> Any:
    """The JSON value `data` holds (bytes: UTF-8); anything unreadable is a ParseError('SOURCE: what is wrong')."""
    text = _text(data, source)
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as exc:
        raise ParseError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ParseError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ParseError(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    return _shallow(value, source)


def toml_data(data: bytes | str, source: str) -> dict[str, Any]:
    """The TOML document `data` holds; NaN and inf stay (their keys say whether they are allowed)."""
    text = _text(data, source)
    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParseError(f"{source}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ParseError(f"{source}: arrays or tables nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # an integer past Python's int-string limit
        raise ParseError(f"{source}: holds an integer too long to read") from None
    if depth(value) > MAX_DEPTH:
        raise ParseError(f"{source}: arrays or tables nested more than {MAX_DEPTH} levels deep")
    return value
