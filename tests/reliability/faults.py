"""Real faults for child processes: each function is run by bench.isolate.call_in_child in a spawned child."""

from __future__ import annotations

import os
import sys
import time


def abort() -> None:
    print("about to abort", file=sys.stderr, flush=True)
    os.abort()


def segfault() -> None:
    import ctypes

    print("about to read address 0", file=sys.stderr, flush=True)
    ctypes.string_at(0)


def allocate(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def hang(seconds: float) -> None:
    print("hanging", file=sys.stderr, flush=True)
    time.sleep(seconds)


def hang_with_grandchild(pid_file: str) -> None:
    """Start a grandchild (same process group), record its pid, then hang: a timeout must kill both."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(pid_file, "w") as f:
        f.write(str(proc.pid))
    time.sleep(600)


def write_stderr_and_exit(code: int) -> None:
    for i in range(500):
        print(f"noise line {i}", file=sys.stderr)
    print("the real reason: runtime could not open libfoo.so", file=sys.stderr, flush=True)
    os._exit(code)


def raise_deep() -> None:
    def inner() -> None:
        raise RuntimeError("the runtime refused the graph")

    inner()
