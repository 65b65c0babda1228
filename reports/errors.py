"""The root of every error a user can act on: a bad argument, run file, model, dataset, profile or results file.

It lives here, in a module that imports nothing, because every package raises such errors and `reports`
may import only the standard library and itself: `optimizer`, `bench` and `mcbench` import this module
(the one exception to "optimizer imports neither bench nor reports"), and `mcbench.errors` re-exports it.
The CLI prints a `UserError` as one line, `mcbench: MESSAGE`, and exits with its `exit_code`.
"""

from __future__ import annotations


class UserError(Exception):
    """Input the user can fix; the message says what and where (one line). Exit code 2 unless a subclass says."""

    exit_code = 2
