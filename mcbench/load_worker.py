"""`mcbench load-worker --master HOST[:PORT]`: Locust workers for an `mcbench load --workers N` on another machine.

`mcbench load --workers N` starts a fresh Locust master for every run of every step. A worker here is a
loop: it starts `locust --worker` with mcbench's own locustfile (this installation's, so nothing is
copied), which connects to the master, gets the step's settings and request bodies from it, runs its
share of the users, sends its per-request records back, and exits when that master ends its run; the
loop then starts the next one, which waits for the next step's master. It runs until stopped (Ctrl-C,
SIGTERM). The machine needs mcbench installed and must reach the master's port and the served model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcbench.base.errors import UsageError
from mcbench.bench.load_settings import ENV as SETTINGS_ENV
from mcbench.bench.load_settings import LoadSettings

DEFAULT_PORT = 5557
RESTART_PAUSE_S = 0.5  # between one Locust worker's exit and the next one's start
FAILING_FAST_S, FAILING_PAUSE_S = 5.0, 5.0  # a worker that fails this soon after its start is restarted this late


def add_parser(sub) -> None:
    worker = sub.add_parser("load-worker", help="generate load for an `mcbench load --workers N` on another machine",
                            description="Run Locust workers for the master of `mcbench load --workers N`, step after "
                                        "step, until stopped.")
    worker.add_argument("--master", required=True, metavar="HOST[:PORT]",
                        help=f"the machine running `mcbench load --workers N` (port default {DEFAULT_PORT})")
    worker.add_argument("--processes", type=int, default=1, metavar="P",
                        help="Locust worker processes to run here, each one of the master's N (default 1; one a "
                             "core: a Locust process uses one core at most)")
    worker.add_argument("--name", help="this worker's name in results.json (default: HOSTNAME-PID; with "
                                       "--processes, -0, -1, ... added)")
    worker.add_argument("--cores", help="comma-separated CPU cores, one a process in turn (default: not pinned)")


def parse_master(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT, or [IPv6]:PORT."""
    host, port = text.strip(), str(DEFAULT_PORT)
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        host, port = inside, rest[1:] if rest.startswith(":") else (rest or port)
    elif host.count(":") == 1:
        host, port = host.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"load-worker: --master must be HOST or HOST:PORT (port 1 to 65535), got {text!r}")
    return host, int(port)


def worker_names(name: str | None, processes: int) -> list[str]:
    base = name or f"{socket.gethostname()}-{os.getpid()}"
    return [base] if processes == 1 else [f"{base}-{i}" for i in range(processes)]


def cmd_load_worker(args: argparse.Namespace) -> int:
    from mcbench.bench.load import LOCUSTFILE
    from mcbench.runguard import Terminated, signals_raise

    host, port = parse_master(args.master)
    from mcbench.load_cmd import usable_cores

    most = len(os.sched_getaffinity(0))  # a Locust process uses one core at most: more only contend
    if not 1 <= args.processes <= most:
        raise UsageError(f"load-worker: --processes must be 1 to {most} (the cores this machine lets it use), "
                         f"got {args.processes}")
    cores = usable_cores(args.cores, "load-worker: --cores")
    names = worker_names(args.name, args.processes)
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", host,
               "--master-port", str(port), "--loglevel", "WARNING"]
    say = lambda m: print(f"load-worker: {m}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"{', '.join(names)} serving the master at {host}:{port} until stopped (Ctrl-C)")
    folder = Path(tempfile.mkdtemp(prefix="mcbench-load-worker-"))  # each process's settings: its name
    settings = [LoadSettings(worker_name=n).write(folder / f"worker{i}.json") for i, n in enumerate(names)]
    procs: list[subprocess.Popen | None] = [None] * len(names)
    runs = [0] * len(names)  # Locust worker processes that ended, one a step's run when all goes well
    try:
        with signals_raise():
            while True:
                for i, proc in enumerate(procs):
                    if proc is not None and proc.poll() is None:
                        continue
                    if proc is not None:
                        runs[i] += 1
                        if proc.returncode == 0:
                            say(f"{names[i]}: run {runs[i]} ended")
                        else:
                            say(f"{names[i]}: Locust exited with code {proc.returncode} (no master for a while, or "
                                "an error above); starting again")
                        quick = time.monotonic() - proc.started < FAILING_FAST_S  # type: ignore[attr-defined]
                        time.sleep(FAILING_PAUSE_S if proc.returncode and quick else RESTART_PAUSE_S)
                    procs[i] = _start(command, settings[i], [cores[i % len(cores)]] if cores else None)
                time.sleep(0.2)
    except Terminated as stop:
        say(f"stopped by {signal.Signals(stop.signum).name} after {sum(runs)} runs")
        return 0
    finally:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            if proc is not None:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _start(command: list[str], settings: Path, cores: list[int] | None) -> subprocess.Popen:
    """A Locust worker process that runs by the settings file `settings` (its name; the rest comes from its master)."""

    def pin() -> None:
        if cores:
            os.sched_setaffinity(0, set(cores))

    env = {**os.environ, SETTINGS_ENV: str(settings)}
    # its own process group: stopping this command stops the worker, and a Ctrl-C reaches this loop only once
    proc = subprocess.Popen(command, env=env, preexec_fn=pin, start_new_session=True)
    proc.started = time.monotonic()  # type: ignore[attr-defined]
    return proc
