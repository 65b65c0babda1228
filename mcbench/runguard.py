"""What keeps a long run's finished work safe: preflight checks, signals, and write failures.

A benchmark run can take an hour. The output folder is checked before any work starts (writable,
some free space); SIGINT and SIGTERM become an exception that unwinds through the children
(bench.isolate kills their process groups) to the pipeline, which saves what finished; a results
write that fails mid-run is reported with the path and the reason, not as a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mcbench.base.errors import UserError

MIN_FREE_BYTES = 200 * 1024 * 1024  # artifacts of a small model, the report, the work folders


class OutputError(UserError):
    """The output folder cannot take the run's files; the message names the path and the reason (exit code 2)."""


class ResultsWriteError(OutputError):
    """A write failed mid-run (a full disk, a folder removed); what was saved before is still there (exit code 1)."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGINT) delivered to the run; `signum` gives the exit status 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_number(exc: BaseException) -> int:
    """The signal a KeyboardInterrupt stands for: its own `signum`, or SIGINT for Python's plain one."""
    return getattr(exc, "signum", signal.SIGINT)


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def preflight_output(folder: Path, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Raise OutputError unless `folder` (or the folder that would hold it) is a writable directory with space.

    It probes with a real file, because permission bits do not tell the whole story (read-only
    mounts, root, ACLs). Nothing is left behind.
    """
    anchor = _existing_ancestor(folder)
    if not anchor.is_dir():
        raise OutputError(f"cannot write the run folder {folder}: {anchor} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=anchor, prefix=".mcbench-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write the run folder {folder}: {anchor} is not writable ({exc.strerror})") from None
    free = shutil.disk_usage(anchor).free
    if free < min_free_bytes:
        raise OutputError(
            f"cannot write the run folder {folder}: only {free / 2**20:.0f} MiB free on its disk, "
            f"need at least {min_free_bytes / 2**20:.0f} MiB"
        )


@contextlib.contextmanager
def signals_raise(hangup: bool = False) -> Iterator[None]:
    """While inside: SIGTERM raises Terminated(SIGTERM) and SIGINT raises Terminated(SIGINT), in the main thread;
    with `hangup`, SIGHUP (the terminal closed) raises Terminated(SIGHUP) too."""

    def handler(signum: int, frame) -> None:
        raise Terminated(signum)

    caught = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hangup else ()))
    previous = {s: signal.signal(s, handler) for s in caught}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While inside (saving the partial run), a second Ctrl-C or SIGTERM does not cut the save short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
