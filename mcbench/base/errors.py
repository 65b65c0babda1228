"""The root of every error a user can act on: a bad argument, run file, model, dataset, profile or results file.

Every package raises such errors, so the root lives in the foundations (`mcbench.base` imports nothing else of
mcbench). A user error derives from `UserError` only, never from a built-in such as ValueError: an
`except ValueError` written for a library's error must not swallow one. The CLI prints a `UserError` as one line,
`mcbench: MESSAGE`, and exits with its `exit_code`; the public name is `mcbench.UserError`.
"""

from __future__ import annotations


class UserError(Exception):
    """Input the user can fix; the message says what and where (one line). Exit code 2 unless a subclass says."""

    exit_code = 2


class UsageError(UserError):
    """Bad command-line arguments or their combination; printed as one line, exit code 2."""
