"""Run a function in a fresh child process and get its result back as data.

Runtimes keep thread pools, allocate globally and can crash; a child per variant keeps one
variant's state (or its segfault) away from the next one's measurement.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable
from typing import Any


class ChildError(RuntimeError):
    """The child raised, crashed or timed out; the message says which."""


def _child_main(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = ("ok", fn(*args))
    except BaseException as exc:  # everything goes back to the parent as data
        result = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    conn.send(result)
    conn.close()


def call_in_child(fn: Callable[..., Any], *args: Any, timeout_s: float = 600.0) -> Any:
    """`fn(*args)` in a spawned process; its exception, crash or timeout becomes a ChildError."""
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child_main, args=(sender, fn, args), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise ChildError(f"timed out after {timeout_s:.0f} s")
        try:
            message = receiver.recv()
        except EOFError:
            process.join(5)
            raise ChildError(f"the process died (exit code {process.exitcode})") from None
    finally:
        if process.is_alive():
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
        receiver.close()
    if message[0] == "error":
        raise ChildError(message[1])
    return message[1]
