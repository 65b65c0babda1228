"""Issue 32, H9: a dataset takes about its own size in memory, not a dict of arrays per sample.

Before the fix every sample became its own dict of views, about 350 bytes a sample on top of the data: a 32 MiB
dataset of 4 floats a sample peaked at 760 MiB in the loader (2.55 GB in a run), and the 1 GiB the limit allows was
killed at 16.7 GB. Measured in a child process, whose peak resident memory is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SAMPLES = 2**20  # 16 MiB of float32 at 4 floats a sample
MEASURE = """
import json, sys
from mcbench.bench.datasets import load_npz
from mcbench.optimizer.artifact import InputSpec

def status_kb(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":"))

with open("/proc/self/clear_refs", "w") as refs:  # the peak (VmHWM) starts again from now: imports do not count
    refs.write("5")
before = status_kb("VmRSS")
data = load_npz(sys.argv[1], (InputSpec("x", (1, 4)),))
count, last = len(data.samples), data.samples[len(data.samples) - 1]["x"].tolist()
for index, feeds in enumerate(data.samples):  # every sample visited, as the accuracy stage does
    pass
print(json.dumps({"count": count, "last": last, "visited": index + 1, "growth": (status_kb("VmHWM") - before) * 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads peak memory from Linux's /proc")
def test_h9_loading_a_dataset_costs_about_its_own_size_per_sample(tmp_path):
    x = np.arange(SAMPLES * 4, dtype=np.float32).reshape(SAMPLES, 4)
    path = tmp_path / "many.npz"
    np.savez(path, x=x)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=300,
                         check=True)
    measured = json.loads(out.stdout)
    assert measured["count"] == measured["visited"] == SAMPLES
    assert measured["last"] == [x[-1].tolist()]
    per_sample = measured["growth"] / SAMPLES
    assert x[0].nbytes / 2 < per_sample < 4 * x[0].nbytes, f"{per_sample:.0f} bytes a sample of {x[0].nbytes}"
