"""The one door for the files mcbench reads and writes: limits checked before a byte is read, outputs replaced whole.

Reading: the path is opened without blocking (a FIFO would wait for a writer for ever) and refused unless it is a
regular file (a directory, a FIFO, `/dev/zero`), then refused if larger than its kind's limit, before any read; the
read stops one byte past the limit, so a file that grows meanwhile cannot take more. A file mcbench reads whole is
data from outside (a results.json is often an artifact of another CI job), so every kind has a limit in `LIMITS`.

Writing: an output that is not a regular file (a device node, a FIFO, a directory) or that is one of the command's
inputs is refused; otherwise the text goes to a temporary file in the same folder, fsync, rename, so a reader never
sees half a file and a failed write leaves the old one.

Standard library and the error root only: every layer imports this.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from mcbench.base.errors import UserError

MiB = 2**20
RESULTS_LIMIT_ENV = "MCBENCH_MAX_RESULTS_MB"
LIMITS = {  # bytes, by kind of file; docs/reliability-and-security.md gives each with its measured peak memory
    "results file": 64 * MiB,  # results.json: samples of every variant; a 30-variant run with load steps is ~5 MiB
    "run file": 1 * MiB,
    "budgets file": 1 * MiB,
    "profile": 1 * MiB,
    "text file": 16 * MiB,  # --text-file, --labels, --calibration-data (lines are bounded too: workload.py)
    "config": 16 * MiB,  # a Hugging Face folder's config.json and the like
}


class FileError(UserError):
    """A file that cannot be read or written as asked; the message names it and says why (exit code 2)."""


def limit_of(kind: str) -> int:
    """The byte limit for a kind of file; results files may be allowed more with MCBENCH_MAX_RESULTS_MB."""
    if kind == "results file":
        text = os.environ.get(RESULTS_LIMIT_ENV, "")
        if text.isdigit() and 0 < int(text) <= 4096:
            return int(text) * MiB
    return LIMITS[kind]


def _kind_of_mode(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size_text(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n:,} bytes"


def read_bytes(path: str | Path, kind: str) -> bytes:
    """The whole file, if it is a regular file within its kind's limit; a FileError naming it otherwise."""
    limit = limit_of(kind)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileError(f"{path}: {_reason(exc)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileError(f"{path}: {_kind_of_mode(info.st_mode)}, not a regular file; give a {kind}")
        if info.st_size > limit:
            raise FileError(f"{path}: {_size_text(info.st_size)} is larger than a {kind} may be "
                            f"(at most {_size_text(limit)})")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 4 * MiB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise FileError(f"{path}: {_reason(exc)}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise FileError(f"{path}: grew past the {_size_text(limit)} a {kind} may be while it was read")
    return data


def read_text(path: str | Path, kind: str) -> str:
    """The file as UTF-8 text (read_bytes' checks first); a FileError for bytes that are not UTF-8."""
    data = read_bytes(path, kind)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    return f"cannot read ({exc.strerror or exc})"


def check_output(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """`path`, unless it is something other than a regular file, or one of `inputs`: then a FileError (exit 2)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        why = "a symbolic link loop" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise FileError(f"cannot write {path}: {why}") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileError(f"cannot write {path}: it is {_kind_of_mode(info.st_mode)}, not a regular file; "
                        "give a file path")
    for source in inputs:
        try:
            same = os.path.samefile(path, source)
        except OSError:
            continue
        if same:
            raise FileError(f"cannot write {path}: it is one of this command's inputs ({source}); "
                            "choose another output")
    return path


def write_text_atomic(path: str | Path, text: str, inputs: Iterable[str | Path] = ()) -> Path:
    """check_output, then write to a temporary file beside `path`, fsync and rename: a reader never sees half a
    file, and a failed write leaves what was there."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")), inputs)


def write_atomic(path: str | Path, fill: Callable[[BinaryIO], object], inputs: Iterable[str | Path] = ()) -> Path:
    """write_text_atomic for any bytes: `fill` writes them to the open temporary file (numpy's savez, say)."""
    path = check_output(path, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results and reports are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
