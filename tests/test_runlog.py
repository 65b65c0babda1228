"""The terminal is mcbench's: third-party output goes to the run folder's third-party.log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mcbench.runlog import LOG_NAME

MARKERS = ("marker-from-logging", "marker-from-warnings", "marker-from-print", "marker-from-fd2")


def test_library_logging_warnings_and_prints_go_to_the_run_log(tmp_path: Path, linear_onnx: Path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(linear_onnx), "--quick",
                           "--no-load", "--no-cache", "--variants", "ort-int8-dynamic", "--metric",
                           "tests.chatty_metric:chatty", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    terminal = proc.stdout + proc.stderr
    log = (out / LOG_NAME).read_text()
    for marker in MARKERS:
        assert marker not in terminal, marker
        assert marker in log, marker
    assert f"third-party output (exporters, quantizers, runtimes): {out / LOG_NAME}" in proc.stderr
    assert terminal.count(LOG_NAME) == 1  # said once
    assert "[2/2] ort-int8-dynamic" in proc.stderr and "results:" in proc.stdout  # mcbench's own lines stay


def test_bad_input_leaves_no_log_behind(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(tmp_path / "missing.onnx"),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no such file" in proc.stderr
    assert not (tmp_path / "run").exists()
