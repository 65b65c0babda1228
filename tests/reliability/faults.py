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


def assert_gone(pid: int, what: str, seconds: float = 5.0) -> None:
    """Wait for `pid` to exit (a zombie counts: a killed process that is not our child may linger as one)."""
    from pathlib import Path

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split()[2] == "Z":
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} {what}")
