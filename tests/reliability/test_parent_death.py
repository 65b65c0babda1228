"""Issue 32, H10: when the gate dies (SIGTERM from `timeout`, or SIGKILL), its re-measuring child dies with it and
its temporary files (`mcbench-child-*`) do not stay behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mcbench.bench.isolate import call_in_child
from tests.reliability.test_results_are_data import finished_run  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    """The processes `pid` started with multiprocessing's spawn (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                spawned = b"spawn_main" in (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and spawned:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _gate_with_its_child(results: Path, tmp: Path) -> tuple[subprocess.Popen, int]:
    env = os.environ | {"TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "mcbench.cli", "gate", str(results), "--baseline", str(results),
                             "--remeasure", "1000"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: _children(proc.pid), 120), "the gate started no re-measuring child"
    except BaseException:
        proc.kill()
        raise
    return proc, _children(proc.pid)[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_h10_the_gates_child_dies_with_the_gate(finished_run, tmp_path, monkeypatch, sig):  # noqa: F811
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc, child = _gate_with_its_child(finished_run / "results.json", scratch)
    time.sleep(1)  # the child is at work: it has read its arguments
    proc.send_signal(sig)
    try:
        assert proc.wait(60) == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
        assert _wait_for(lambda: not _alive(child), 10), f"the child {child} outlived the gate"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
    if sig == signal.SIGKILL:  # nobody was left to clean up: the next child call does
        monkeypatch.setattr(tempfile, "tempdir", str(scratch))
        assert call_in_child(os.getpid) != os.getpid()
    assert sorted(p.name for p in scratch.glob("mcbench-child-*")) == []


SERVE_AND_WAIT = """
import sys, time
from pathlib import Path
from mcbench.bench.launcher import serve_in_subprocess
with serve_in_subprocess(Path(sys.argv[1]), None) as server:
    print(server.pid, flush=True)
    time.sleep(600)
"""


def test_h10_a_load_test_server_dies_with_a_run_killed_outright(tmp_path):
    from tests.test_load import write_spec

    proc = subprocess.Popen([sys.executable, "-c", SERVE_AND_WAIT, str(write_spec(tmp_path))], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server = int(proc.stdout.readline())
    try:
        assert _alive(server)
        proc.kill()  # no cleanup runs: only the kernel can end the server (its own session)
        proc.wait(30)
        assert _wait_for(lambda: not _alive(server), 10), f"the server {server} outlived its parent"
    finally:
        proc.kill()
        if _alive(server):
            os.kill(server, signal.SIGKILL)
