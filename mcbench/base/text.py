"""Text helpers every layer uses: `first_line`, the line of a library's error that says what failed, and `clip`.

The terminal, results.json and the report all quote an error by this one line. Standard library only.
"""

from __future__ import annotations

import re

_CPP_LOCATION = re.compile(r"(?:Exception from|Check '.*' failed at) \S+:\d+:?\s*$")


def first_line(error: BaseException | str | None, limit: int | None = None) -> str:
    """The line of an error's message that says what failed (libraries print pages); its type when it has none.

    OpenVINO's exceptions open with the C++ source lines they passed through (`Exception from
    src/inference/src/cpp/core.cpp:84:`, `Check '...' failed at src/...:151:`): those are dropped, a line that
    ends in ':' is joined with what it introduces (the summary of a conversion report where there is one), so
    an unconvertible graph reads `FrontEnd API failed with OpConversionFailure: Model wasn't fully converted.
    Failed operations detailed log: Conversion is failed for: Conv-16, ReduceMean-16`. `limit` cuts the line with '…'.
    """
    lines = _message_lines(str(error if error is not None else ""))
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    line, rest = lines[0], lines[1:]
    for _ in range(4):
        if not line.endswith(":") or not rest or rest[0].startswith("---"):
            break
        introduced = rest.pop(0)
        if introduced.startswith("-- "):  # a detailed list follows: its summary says it in one line
            line = f"{line} {_summary(rest) or introduced[3:]}"
            break
        line = f"{line} {introduced}"
    return line if limit is None else clip(line, limit)


def clip(text: str, limit: int) -> str:
    """`text`, or its first `limit` - 1 characters and '…' where it is longer than `limit`."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message_lines(text: str) -> list[str]:
    """The message's non-blank lines, C++ source locations cut out (what precedes one on its line is kept)."""
    out = []
    for raw in text.strip().splitlines():
        where = _CPP_LOCATION.search(raw)
        line = (raw[: where.start()] if where else raw).strip()
        if line:
            out.append(line)
    return out


def _summary(lines: list[str]) -> str | None:
    """The line after a 'Summary:' line (OpenVINO's conversion report ends with one), without its '-- '."""
    for i, line in enumerate(lines[:-1]):
        if line == "Summary:":
            return lines[i + 1].lstrip("- ")
    return None
