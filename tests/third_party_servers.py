"""Third-party KServe v2 servers, installed from PyPI at test time into their own cached virtual environments.

A server's dependencies must not meet mcbench's pins, so each one gets a venv of its own (never the project's
.venv), made once with `python -m venv` and pip, under `$MCBENCH_TEST_SERVERS`, else
`~/.cache/mcbench/test-servers`, in a folder named by its pinned version. A lock file (fcntl.flock) makes a
second test process wait for the first one's install instead of racing it. Without the package registry the
tests skip with the reason, outside CI; in CI (CI=true) a failed install fails them, as tests/packaged_models.py
does for model wheels.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVERS = {
    # Seldon's MLServer with its scikit-learn runtime: `mlserver start FOLDER` serves a joblib file by its
    # model-settings.json, over the KServe v2 REST protocol. uvloop 0.22 broke MLServer 1.7.1's inference worker
    # processes (SeldonIO/MLServer#2286: "There is no current event loop"), so the last one before it is pinned.
    "mlserver": ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"),
}
INSTALL_TIMEOUT_S = 1800


def cache_dir() -> Path:
    return Path(os.environ.get("MCBENCH_TEST_SERVERS") or Path.home() / ".cache" / "mcbench" / "test-servers")


def server_venv(name: str) -> Path:
    """The bin/ folder of a venv holding the server's pinned packages, installing them the first time."""
    requirements = SERVERS[name]
    folder = cache_dir() / "-".join(r.replace("==", "-") for r in requirements)
    done = folder / ".complete"
    if done.is_file():
        return folder / "bin"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process installing it: wait for its venv
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a half-made venv of an install that was cut short
            _install(folder, requirements)
            done.write_text("\n".join(requirements) + "\n")
    return folder / "bin"


def _install(folder: Path, requirements: tuple[str, ...]) -> None:
    steps = ([sys.executable, "-m", "venv", str(folder)],
             [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              *requirements])
    for command in steps:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        if proc.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:]
            reason = f"cannot install {' '.join(requirements)} into a venv: {last}"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)


@contextmanager
def running(command: list[str], cwd: Path, ready_url: str, log: Path, timeout_s: float = 180) -> Iterator[None]:
    """The server started by `command` in its own process group, until `ready_url` answers 200; its whole group
    (MLServer forks inference workers) is stopped on the way out, whatever the test did."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(proc, ready_url, log, timeout_s)
        yield
    finally:
        _stop_group(proc)


def _wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode} before it was ready:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"the server was not ready at {url} within {timeout_s:g} s:\n{log.read_text()[-3000:]}")


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the group (the server's own shutdown), then SIGKILL to whatever of it is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            continue
