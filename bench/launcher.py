"""The model server in its own process: start it, wait for its ready line, stop it (the run's load stage, the
serving search, the tests and benchmarks).

The process is `python -m mcbench.bench.server_cli` (bench/server_cli.py); a server that exits or is not ready in
time raises StartError with the end of its log, never hangs.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mcbench.bench.guards import StartError
from mcbench.bench.isolate import die_with_parent
from mcbench.bench.server_cli import READY


@dataclass
class ServerHandle:
    """A server serve_in_subprocess started: where it listens, its process and log, and what its ready line said."""

    port: int
    pid: int
    log: Path
    dispatch: str = "thread"  # where its model calls run: inline (the event loop) or thread
    model_ms: float | None = None  # the warm-up median that decided it
    ready: dict[str, str] = field(default_factory=dict)  # every field of the ready line (instances, max_batch, ...)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # serve_in_subprocess never binds another address


@contextlib.contextmanager
def serve_in_subprocess(spec_path: Path, cores: list[int] | None, timeout_s: float = 120.0,
                        extra: list[str] | None = None, env: dict[str, str] | None = None,
                        port: int = 0) -> Iterator[ServerHandle]:
    """Start the server in its own process, wait until it is ready, stop it on exit (SIGTERM, then SIGKILL).

    `extra` are further server flags (limits, batching); a server that exits or is not ready within
    `timeout_s` raises StartError with the end of its log, never hangs.
    """
    log = Path(spec_path).with_suffix(".server.log")
    cmd = [sys.executable, "-m", "mcbench.bench.server_cli", "--spec", str(spec_path), "--port", str(port),
           *(extra or [])]
    if cores:
        cmd += ["--cores", ",".join(map(str, cores))]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, start_new_session=True,
                                env={**os.environ, **(env or {})}, preexec_fn=die_with_parent)
    try:
        ready = _wait_ready(proc, log, timeout_s)
        yield ServerHandle(int(ready["port"]), proc.pid, log, dispatch=ready.get("dispatch", "thread"),
                           model_ms=float(ready["model_ms"]) if "model_ms" in ready else None, ready=ready)
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen, log: Path, timeout_s: float) -> dict[str, str]:
    """The ready line's `key=value` fields (port, dispatch, model_ms) once the server prints it."""
    deadline = time.monotonic() + timeout_s
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
        if ready:
            line = proc.stdout.readline()
            if line.startswith(READY.encode()):
                return dict(item.split("=", 1) for item in line.decode().split()[1:] if "=" in item)
        if proc.poll() is not None:
            raise StartError(f"model server exited with code {proc.returncode} before it was ready: {_tail(log)}")
    raise StartError(f"model server not ready after {timeout_s:g} s: {_tail(log)}")


def _tail(log: Path, chars: int = 1500) -> str:
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    return f"{text[-chars:]} (log: {log})" if text else f"no output (log: {log})"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout:
        proc.stdout.close()
