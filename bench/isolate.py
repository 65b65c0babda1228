"""Run a function in a fresh child process and get its result back as data.

Runtimes keep thread pools, allocate globally and can crash; a child per variant keeps one
variant's state (or its segfault) away from the next one's measurement. The child runs in its
own process group with its stderr in a file, so a crash is reported with its signal and the
tail of what it printed, and a timeout (or the parent being interrupted) kills the child and
anything it started. A parent that is killed outright cannot clean up: the kernel kills the child
when its parent dies (PR_SET_PDEATHSIG), the child removes its argument file once read, and the
next call removes the stderr files of children whose parent is gone (they are named after it).

The arguments go to the child in a file, not down the start-up pipe: `Process.start()` writes what it
pickles into that pipe while it blocks, so more than the 64 KiB a pipe buffers (a dataset, baseline
outputs) hung the parent for ever when the child died before reading them, and no timeout had begun.
Now start() sends only a path and `fn`'s name, and everything the child does after it counts under
the timeout: importing `fn`'s module happens after the child's stderr goes to its file, so an import
that raises or crashes is reported with its traceback, not lost on the parent's terminal.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcbench.base.text import first_line

STDERR_TAIL_CHARS = 2000


class ChildError(RuntimeError):
    """The child raised, crashed or timed out; the message says which.

    `kind` is "error" (it raised), "crashed" (it died: `exit_status` is its exit code, negative
    for a signal, as multiprocessing reports it), "timeout" or "oom" (it raised MemoryError under
    its memory limit). `stderr_tail` is the last lines the child wrote to stderr.
    """

    def __init__(self, message: str, kind: str = "error", exit_status: int | None = None,
                 stderr_tail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail


STDERR_LINES_IN_ERROR = 20


def error_text(exc: ChildError) -> str:
    """The error a failed child leaves in results and report: what happened, how it ended, its stderr tail.

    How it ended is said where it says something: a timeout's kill. A child that raised or ran out of memory
    answered and then exited 0, and "(exit code 0)" after its failure only misled; a crash's message says it.
    """
    message = str(exc)
    cause = first_line(message)  # the line that says what failed (OpenVINO opens with C++ source lines)
    text = f"{exc.kind}: {cause}"
    if cause != message.strip():
        text += f"\n--- its whole message ---\n{message}"
    if exc.kind != "crashed" and exc.exit_status:
        text += f" ({exit_status_text(exc.exit_status)})"
    if exc.stderr_tail:
        tail = "\n".join(exc.stderr_tail.splitlines()[-STDERR_LINES_IN_ERROR:])
        text += f"\n--- last lines of its stderr ---\n{tail}"
    return text


def exit_status_text(code: int | None) -> str:
    """'exit code 7' or 'signal SIGSEGV (exit status -11)': how a process ended, in words."""
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"signal {name} (exit status {code})"
    return f"exit code {code}"


FnRef = Callable[..., Any] | tuple[str, str]  # the function, or its (module, qualified name) to import


def _reference(fn: Callable[..., Any]) -> FnRef:
    """A module-level function by name, so the child imports its module itself; others as they are."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in name:
        return fn
    return (module, name)


def _resolve(ref: FnRef) -> Callable[..., Any]:
    if not isinstance(ref, tuple):
        return ref
    import importlib

    obj: Any = importlib.import_module(ref[0])
    for part in ref[1].split("."):
        obj = getattr(obj, part)
    return obj


def _libc_prctl() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup is all there is
        return None


_PRCTL = _libc_prctl()


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when the thread that started it ends (Linux's PR_SET_PDEATHSIG): a child
    in its own session or group gets no signal when a `timeout` or `kill -9` ends its parent, and would run on,
    orphaned. Also a `preexec_fn` for subprocess.Popen (the load test's server and Locust processes)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG


def _die_with(parent: int) -> None:
    die_with_parent()
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _child_main(conn: Any, fn: FnRef, args_path: str, stderr_path: str,
                memory_limit_bytes: int | None, parent: int) -> None:
    os.setpgrp()  # its own group: a timeout kills it and its children; the terminal's Ctrl-C goes to the parent
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd = os.open(stderr_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 2)
    os.close(fd)
    import faulthandler

    faulthandler.enable()  # a segfault or abort leaves a Python traceback in the stderr tail
    if memory_limit_bytes is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    args: tuple = ()
    try:
        with open(args_path, "rb") as f:
            args = pickle.load(f)
        os.unlink(args_path)  # read: nothing needs it any more, whatever ends the parent
        result = ("ok", _resolve(fn)(*args))
    except MemoryError as exc:
        result = ("oom", f"MemoryError: {exc}", "")
    except BaseException as exc:  # everything goes back to the parent as data; the traceback to the stderr tail
        traceback.print_exc()
        result = ("error", f"{type(exc).__name__}: {exc}", "")
    del args  # a dataset's samples: freed before the outputs go, or the hand-off holds both (issue 32)
    _send(conn, result)
    conn.close()


CHUNK_BYTES = 16 * 2**20  # an array crosses in messages of this size: each is held whole once more while received


def _send(conn: Any, result: tuple) -> None:
    """The result down the pipe, its arrays' bytes sent as they are (pickle protocol 5, out of band): pickled into
    one message, the outputs of a dataset's evaluation were held once more in the child and twice in the parent.
    Each array goes in chunks: multiprocessing receives a message whole before copying it into the buffer given,
    so an array sent as one message was held twice in the parent while it arrived (1 GiB more at the dataset limit)."""
    buffers: list[pickle.PickleBuffer] = []
    message = pickle.dumps(result, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    conn.send((message, [v.nbytes for v in views]))
    for view in views:
        for start in range(0, view.nbytes, CHUNK_BYTES):
            conn.send_bytes(view[start:start + CHUNK_BYTES])


def stderr_tail(path: Path, chars: int = STDERR_TAIL_CHARS) -> str:
    """The last `chars` characters the child wrote to stderr, whole lines, stripped."""
    try:
        data = path.read_bytes()[-chars:]
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if len(data) == chars and "\n" in text:
        text = text.split("\n", 1)[1]  # drop the cut first line
    return text.strip()


def _kill_group(process: Any) -> None:
    """SIGKILL the child's process group (the child and whatever it started), then reap the child."""
    if process.pid is None:  # it never started: nothing to kill, nothing to join
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    process.join()


def call_in_child(fn: Callable[..., Any], *args: Any, timeout_s: float = 600.0,
                  memory_limit_bytes: int | None = None) -> Any:
    """`fn(*args)` in a spawned process; its exception, crash, out-of-memory or timeout becomes a ChildError.

    Any exception in the parent while it waits (KeyboardInterrupt, a SIGTERM turned into one)
    kills the child's process group before it propagates: no orphan keeps running.
    """
    ctx = mp.get_context("spawn")
    _remove_orphaned_files()
    args_path = _pickled(args)  # a pickling error is the caller's, raised here before any process starts
    fd, name = tempfile.mkstemp(prefix=_prefix(), suffix=".stderr")
    os.close(fd)
    log = Path(name)
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child_main,
                          args=(sender, _reference(fn), str(args_path), name, memory_limit_bytes, os.getpid()),
                          daemon=True)
    finished = False
    try:
        process.start()
        sender.close()
        message = _receive(receiver, process, log, timeout_s)
        process.join(5)
        finished = True
    finally:
        if not finished or process.is_alive():
            _kill_group(process)
        receiver.close()
        tail = stderr_tail(log)
        _forward(log)
        log.unlink(missing_ok=True)
        args_path.unlink(missing_ok=True)
    if message[0] == "ok":
        return message[1]
    kind = "oom" if message[0] == "oom" else "error"
    detail = f"out of memory (limit {memory_limit_bytes} bytes): {message[1]}" if kind == "oom" else message[1]
    raise ChildError(detail, kind, process.exitcode, tail)


def _prefix(pid: int | None = None) -> str:
    """Temporary files of a child are named after the parent's process id, so they can be told from the living."""
    return f"mcbench-child-{pid or os.getpid()}-"


def _remove_orphaned_files() -> None:
    """The temporary files of children whose parent was killed (SIGKILL: no cleanup ran); a parent that is still
    running keeps its own."""
    for path in Path(tempfile.gettempdir()).glob("mcbench-child-*-*"):
        pid = path.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:  # another user's process: not ours to judge
            continue


def _forward(log: Path) -> None:
    """What the child wrote to stderr (warnings, library chatter), onto the parent's stderr: during
    `mcbench run` that is the run's third-party log, so nothing a child said is lost or on the terminal."""
    try:
        data = log.read_bytes()
    except OSError:
        return
    if data:
        with contextlib.suppress(OSError):
            os.write(2, data if data.endswith(b"\n") else data + b"\n")


def _pickled(args: tuple[Any, ...]) -> Path:
    """The arguments pickled into a private temporary file, for the child to read once it is up."""
    fd, name = tempfile.mkstemp(prefix=_prefix(), suffix=".args")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(args, f, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _receive(receiver: Any, process: Any, log: Path, timeout_s: float) -> tuple:
    """The child's message; a timeout or a death without one raises ChildError with the stderr tail."""
    if not receiver.poll(timeout_s):
        _kill_group(process)
        tail = stderr_tail(log)
        raise ChildError(f"timed out after {timeout_s:g} s; the child was killed" + _tail_suffix(tail), "timeout",
                         process.exitcode, tail)
    try:
        return _received(receiver)
    except EOFError:
        process.join(5)
        tail = stderr_tail(log)
        raise ChildError(f"the process died: {exit_status_text(process.exitcode)}" + _tail_suffix(tail), "crashed",
                         process.exitcode, tail) from None


def _received(receiver: Any) -> tuple:
    """What _send sent: the arrays' bytes read straight into their own writable buffers."""
    message, sizes = receiver.recv()
    buffers = []
    for size in sizes:
        buffer = bytearray(size)
        for start in range(0, size, CHUNK_BYTES):
            receiver.recv_bytes_into(buffer, start)
        buffers.append(buffer)
    return pickle.loads(message, buffers=buffers)


def _tail_suffix(tail: str) -> str:
    if not tail:
        return ""
    last = tail.splitlines()[-1]
    return f"; last stderr line: {last}"
