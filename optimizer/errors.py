"""Shared wording for errors that quote an exception from a library."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries print pages), or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
