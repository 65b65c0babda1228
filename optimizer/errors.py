"""Shared wording for errors that quote an exception from a library.

The one helper lives in `reports/errors.py` (a module every package may import) so that the terminal, results and
the report all quote an error by the same line; it is re-exported here for the optimizer's passes.
"""

from __future__ import annotations

from mcbench.reports.errors import first_line

__all__ = ["first_line"]
