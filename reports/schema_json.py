"""The JSON Schema of results.json, generated from the dataclasses in `reports.schema`, and the check against it.

The check of a results file against the committed schema is `reports/schema_check.py`'s.
The dataclasses are the one source of truth (several people add fields to them); `reports/results.schema.json`
is generated from them and committed, so tools outside Python can validate a results file too. Regenerate it
after changing a dataclass:

    python -m mcbench.reports.schema_json

A test fails when the committed file is out of date. Every float field also admits null, because NaN and the
infinities are written as null (JSON has neither), except a latency (`LATENCY` in its field's metadata): a number
>= 0, always; free-form dict fields (artifact, settings, passes entries,
op_profile, config, environment) stay open objects.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from typing import Any

from mcbench.reports import schema as results_schema
from mcbench.reports.schema_check import SCHEMA_PATH

SCHEMA_ID = "https://mcbench.invalid/results.schema.json"  # an identifier only; nothing is fetched from it


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one annotated Python type; nested dataclasses go into `defs` once."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(a, defs) for a in args if a is not type(None)]
        nullable = type(None) in args
        if len(options) == 1:
            only = options[0]
            return {"anyOf": [only, {"type": "null"}]} if nullable and "type" not in only else _nullable(only, nullable)
        return {"anyOf": options + ([{"type": "null"}] if nullable else [])}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": ["number", "null"]}  # NaN and inf are written as null
    if tp is str:
        return {"type": "string"}
    if origin in (list, tuple):
        return {"type": "array", "items": _type_schema(args[0], defs) if args else {}}
    if origin is dict or tp is dict:
        value = _type_schema(args[1], defs) if args else {}
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # reserve first: a recursive type refers to itself
            defs[name] = _dataclass_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema for the annotation {tp!r}")


def _nullable(schema: dict[str, Any], nullable: bool) -> dict[str, Any]:
    if not nullable:
        return schema
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": kinds + (["null"] if "null" not in kinds else [])}


def _dataclass_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, vars(results_schema))
    fields = dataclasses.fields(cls)
    required = [f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    out: dict[str, Any] = {"type": "object"}
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):  # not the signature dataclass makes up
        out["description"] = " ".join(cls.__doc__.split())
    out["properties"] = {f.name: _latency_schema(hints[f.name]) if f.metadata.get("latency")
                         else _type_schema(hints[f.name], defs) for f in fields}
    out["required"] = required
    out["additionalProperties"] = False
    return out


def _latency_schema(tp: Any) -> dict[str, Any]:
    """A latency (or a list of them): a number >= 0, never null, which is how NaN would be written."""
    number = {"type": "number", "minimum": 0}
    return {"type": "array", "items": number} if typing.get_origin(tp) is list else number


def generated_schema() -> dict[str, Any]:
    """The schema of a results file as the dataclasses define it today."""
    defs: dict[str, Any] = {}
    root = _dataclass_schema(results_schema.RunResult, defs)
    root["properties"]["schema_version"] = {"const": results_schema.SCHEMA_VERSION}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "mcbench results",
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def schema_text() -> str:
    return json.dumps(generated_schema(), indent=1, sort_keys=False) + "\n"


def main() -> int:
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
