"""The terminal is mcbench's: while a run works, everything else writes to a log file in the run folder.

Exporters, quantizers and runtimes print from Python (`logging`, `warnings`, `print`) and from C++ straight
to file descriptors 1 and 2. Only a redirect of those descriptors catches all of them, children included
(a spawned child inherits them). mcbench's own progress lines go to a copy of the terminal's stderr taken
before the redirect. Until the run folder exists the log is a temporary file; `keep_in` moves it there.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TextIO

LOG_NAME = "third-party.log"


class ThirdPartyOutput:
    """File descriptors 1 and 2 point at a log file inside the `with`; `say` writes to the terminal.

    The log's path is said once, when the `with` ends and the run folder still holds it.
    """

    def __init__(self) -> None:
        self.path: Path | None = None
        self.terminal: TextIO = sys.stderr
        self._saved: tuple[int, int] | None = None
        self._temporary = True

    def __enter__(self) -> ThirdPartyOutput:
        _flush()
        self._saved = (os.dup(1), os.dup(2))
        # Where sys.stderr was replaced (a test's capture), mcbench's lines go to the replacement.
        if sys.stderr is sys.__stderr__:
            self.terminal = os.fdopen(os.dup(2), "w", buffering=1)
        fd, name = tempfile.mkstemp(prefix="mcbench-", suffix=".log")
        self.path = Path(name)
        self._point_at(fd)
        return self

    def say(self, message: str) -> None:
        print(message, file=self.terminal, flush=True)

    def keep_in(self, folder: Path) -> Path:
        """Move the log into the run folder (what was written so far included); say where, once."""
        assert self.path is not None, "keep_in outside the with"
        target = Path(folder) / LOG_NAME
        _flush()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, self.path.read_bytes())
        self._point_at(fd)
        if self._temporary:
            self.path.unlink(missing_ok=True)
        self.path, self._temporary = target, False
        return target

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        _flush()
        if self._saved is not None:
            for fd, saved in zip((1, 2), self._saved, strict=True):
                os.dup2(saved, fd)
                os.close(saved)
            self._saved = None
        empty_failure = kind is not None and self.path is not None and self.path.exists() and \
            self.path.stat().st_size == 0
        if (self._temporary or empty_failure) and self.path is not None:  # bad input: nothing is kept
            self.path.unlink(missing_ok=True)
        elif self.path is not None and self.path.exists():  # said once, at the end: a bad input removes the folder
            self.say(f"third-party output (exporters, quantizers, runtimes): {self.path}")
        if self.terminal is not sys.stderr:
            self.terminal.close()

    @staticmethod
    def _point_at(fd: int) -> None:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
