"""A results file checked against the committed JSON Schema, `reports/results.schema.json`, on write and on read.

The schema is generated from the dataclasses of `reports.schema` by `reports/schema_json.py`; this module only
reads the committed file, so `reports.schema` can check with it without importing its own generator.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from mcbench.base.text import clip

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
REGENERATE = "python -m mcbench.reports.schema_json"


@lru_cache(maxsize=1)
def _validator() -> Any | None:
    """A jsonschema validator for the committed schema, or None where jsonschema is not installed."""
    try:
        import jsonschema
    except ImportError:
        return None
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


_said_missing = False


def _say_missing_once() -> None:
    global _said_missing
    if not _said_missing:
        _said_missing = True
        print("mcbench: jsonschema is not installed: results files are checked against the dataclasses only, "
              f"not {SCHEMA_PATH.name} (pip install jsonschema)", file=sys.stderr)


def schema_errors(data: Any, limit: int = 5) -> list[str] | None:
    """What in `data` breaks the committed JSON Schema (at most `limit`, each with its JSON path);
    None where the check could not run (jsonschema missing: said once on stderr, never a silent pass)."""
    validator = _validator()
    if validator is None:
        _say_missing_once()
        return None
    from jsonschema.exceptions import best_match

    # best_match descends into anyOf (a nullable record) to the error that says what is actually wrong
    errors = [best_match([e]) for e in validator.iter_errors(data)]
    errors = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])[:limit]
    return [f"{e.json_path}: {clip(e.message, 160)}" for e in errors]
