"""Issue 32, H8: the --input element limit bounds the run's memory: at the limit, with every copy the run makes
(generated evaluation and calibration samples, each measuring child's copy, outputs), a run fits the amount the
docs state. `--input x=16777216,4` (the old limit's 2^26 elements) took 12.9 GB; it is refused now."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mcbench.cli import main
from mcbench.optimizer.intake import MAX_INPUT_ELEMENTS
from tests.conftest import make_linear_onnx
from tests.reliability.test_bad_inputs import _one_line

ROOT = Path(__file__).resolve().parents[2]
STATED_PEAK_MIB = 6144  # docs/reliability-and-security.md: a run at the --input limit fits in 6 GiB


def test_h8_the_old_limit_is_refused_before_anything_is_allocated(tmp_path, capsys):
    model = make_linear_onnx(tmp_path / "dyn.onnx", batch="batch")
    assert main(["run", "--model", str(model), "--input", "x=16777216,4", "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys) == ("mcbench: --input 'x=16777216,4': 67108864 elements (268435456 bytes) is over the "
                                 "limit of 2097152 elements per input (set MCBENCH_MAX_INPUT_ELEMENTS to raise it)")
    assert not (tmp_path / "run").exists()


def test_h8_the_docs_state_the_limit_the_code_has():
    page = (ROOT / "docs" / "reliability-and-security.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `--input` shape |"))
    assert f"({MAX_INPUT_ELEMENTS:,})" in row and f"{STATED_PEAK_MIB // 1024} GiB" in row, row


@pytest.mark.slow
def test_h8_a_run_at_the_input_limit_fits_the_stated_memory():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.limits_memory", "input", str(MAX_INPUT_ELEMENTS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    peak = re.search(r"peak (\d+) MiB, \d+ s, exit 0", proc.stdout)
    assert peak, proc.stdout + proc.stderr
    assert int(peak.group(1)) <= STATED_PEAK_MIB
