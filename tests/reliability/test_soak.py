"""benchmarks/soak.py runs end to end: ramp to capacity, hold 80% of it, report memory, errors and p99 per window."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_short_soak_reports_memory_errors_and_p99(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "0.2", "--ramp-step-seconds", "2",
         "--window-seconds", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )
    result = json.loads(out.read_text())
    assert proc.returncode == (0 if result["errors"] == 0 else 1), proc.stderr[-2000:]
    assert result["ramp"]["capacity_rps"] > 0
    assert [s["users"] for s in result["ramp"]["steps"]] == [1, 2, 4, 8]
    assert result["target_rps"] == pytest.approx(0.8 * result["ramp"]["capacity_rps"], abs=0.1)
    assert result["requests"] > 0 and result["achieved_rps"] > 0
    assert [w["window"] for w in result["windows"]] == [0, 1, 2]
    assert all(w["p99_ms"] is None or w["p99_ms"] >= w["p50_ms"] > 0 for w in result["windows"])
    assert result["memory"]["samples"] >= 2 and result["memory"]["first_mib"] > 10  # a Python server's RSS
    assert "p99 drift first -> last window" in proc.stdout


def test_windows_and_drift_from_records():
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from soak import memory_summary, p99_drift, windows
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    # 10 s of requests at 10/s: latency 10 ms in the first 5 s, 20 ms after; one 503 at 7 s
    starts = np.arange(0, 10, 0.1)
    latency = np.where(starts < 5, 0.010, 0.020)
    status = np.where(np.isclose(starts, 7.0), 503, 200)
    per = windows(np.column_stack([starts, latency, status]), 10.0, 5.0)
    assert [(w["requests"], w["errors"], w["full"]) for w in per] == [(50, 0, True), (50, 1, False)]
    assert per[0]["p99_ms"] == pytest.approx(10.0)
    assert p99_drift([{**w, "full": True} for w in per]) == pytest.approx(1.0)
    assert p99_drift(per) is None  # the last window is partial: no drift from one full window
    mem = memory_summary([(0.0, 100 * 2**20), (60.0, 110 * 2**20), (120.0, 120 * 2**20)])
    assert (mem["growth_mib"], mem["slope_mib_per_min"], mem["growth_percent"]) == (20.0, 10.0, 20.0)
