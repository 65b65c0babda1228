"""mcbench: compile a trained model into deployable variants and measure them as production will see them.

The public API (mcbench.api; documented in docs/python-api.md): `run`, `load_results`, `report`,
`recommend`, `compare`, `export`, `gate`, `load` (a server's load test), `serve`, the hardware profiles
(`profiles`, `find_profile`, `detect_profile`), and `execute` with `run_config` for a RunConfig of your own; every
`mcbench` command but `load-worker` (a supervisor of Locust processes for another machine's load test) calls it.
Results are the typed
records of `mcbench.reports.schema` (`RunResult`, `VariantResult`); bad input raises a `UserError`.
Everything else is internal. Importing mcbench is cheap: the runtimes load when a function needs them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunResult", "UserError", "VariantResult", "compare", "detect_profile", "execute", "export",
           "find_profile", "gate", "load", "load_results", "profiles", "recommend", "report", "run", "run_config",
           "serve"]

_API = {"compare", "detect_profile", "execute", "export", "find_profile", "gate", "load", "load_results", "profiles",
        "recommend", "report", "run", "run_config", "serve"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from mcbench import api

        return getattr(api, name)
    if name == "UserError":  # the root of every error a user can act on (mcbench.base.errors)
        from mcbench.base.errors import UserError

        return UserError
    if name in ("RunResult", "VariantResult"):
        from mcbench.reports import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'mcbench' has no attribute {name!r}")
