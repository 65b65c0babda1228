"""Issue 32: the accuracy stage's outputs take about their own size in memory.

Before the fix bench.accuracy.collected kept a list of one float64 array per output per inference, then a moved
view of each, and joined them at the end: 20,000 runs of two small outputs (1.6 MB of data) peaked at 15.9 MB under
tracemalloc, about 700 bytes a run on top of its 80 (a whole run on 2^21 samples of a [N, 3] output: 1,179 MiB).
Now each run's rows are copied into one array per output as they come: 2.0 MB (the whole run: 348 MiB). The join
must stay the same one, batch axis and all: the second test compares it with the join of the runs as given, on
layouts that exercise every way back to that join.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from mcbench.bench.accuracy import collected
from mcbench.bench.roles import batch_axis

RUNS = 20_000


class Affine:
    """A session of two outputs: [N, 4] and a time-major [3, N, 2] (a CTC recogniser's layout)."""

    output_names = ["scores", "steps"]

    def run(self, feeds):
        x = feeds["x"].astype(np.float64)  # [N, 4]
        return [x * 2 + 1, np.stack([x[:, :2] * (t + 1) for t in range(3)])]


def test_outputs_of_many_runs_take_about_their_own_size():
    samples = [{"x": np.full((1, 4), i, dtype=np.float32)} for i in range(RUNS)]
    session = Affine()
    session.run(samples[0])  # anything allocated once, on the first call, is not the join's
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        (scores, steps), axes = collected(session, samples)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert axes == [0, 1] and scores.shape == (RUNS, 4) and steps.shape == (RUNS, 3, 2)
    assert scores[-1].tolist() == [2 * (RUNS - 1) + 1] * 4 and steps[7, 2].tolist() == [21.0, 21.0]
    data = scores.nbytes + steps.nbytes  # 1.6 MB
    assert peak < 1.5 * data + 64 * 1024, f"peak {peak} bytes for {data} bytes of outputs"


def joined_as_given(runs: list[list[np.ndarray]], rows: list[int], declared: list[int | None] | None):
    """The join the stage made before: every run kept, the batch axis found over all their shapes, concatenated."""
    outputs, axes = [], []
    for i in range(len(runs[0])):
        axis = batch_axis([r[i].shape for r in runs], rows, declared[i] if declared else None)
        outputs.append(np.concatenate([r[i][None] if axis is None else np.moveaxis(r[i], axis, 0) for r in runs]))
        axes.append(axis)
    return outputs, axes


class Replay:
    """A session that answers each feed with the outputs stored for it (feed {"x": [[k]] * rows} -> runs[k])."""

    output_names = ["a"]

    def __init__(self, runs):
        self.runs = runs

    def run(self, feeds):
        return self.runs[int(feeds["x"].flat[0])]


RNG = np.random.default_rng(5)
LAYOUTS = {  # per run: (rows fed, output shapes); declared batch axes
    "batch first, last batch smaller": ([(4, [(4, 3)])] * 3 + [(2, [(2, 3)])], None),
    "time-major": ([(1, [(6, 1, 5)])] * 4, None),
    "not per sample: one row a run": ([(2, [(7,)])] * 3, None),
    "0-d": ([(1, [()])] * 3, None),
    "declared axis refuted by a later run": ([(4, [(4, 4)]), (4, [(4, 4)]), (2, [(2, 4)])], [1]),
    "a later run with more rows": ([(1, [(1, 3)]), (3, [(3, 3)]), (2, [(2, 3)])], None),
    "axis tie broken by the last run": ([(1, [(1, 1)]), (2, [(3, 2)])], None),
    "a later run of another rank": ([(1, [(1, 2)]), (1, [(1, 1, 2)])], None),
    "another shape: refused": ([(1, [(1, 3)]), (1, [(1, 4)])], None),
    "two outputs, one falls back": ([(2, [(2, 2), (2, 5)]), (2, [(2, 2), (2, 5)]), (1, [(2, 1), (1, 5)])], None),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_join_is_the_one_of_the_runs_as_given(layout):
    plan, declared = LAYOUTS[layout]
    runs = [[RNG.normal(size=shape) for shape in shapes] for _, shapes in plan]
    samples = [{"x": np.full((rows, 1), k, dtype=np.float32)} for k, (rows, _) in enumerate(plan)]
    session = Replay(runs)
    session.output_names = [f"o{i}" for i in range(len(runs[0]))]
    try:
        expected = joined_as_given(runs, [rows for rows, _ in plan], declared)
    except ValueError:
        with pytest.raises(ValueError, match="has a different shape per sample"):
            collected(session, samples, declared)
        return
    outputs, axes = collected(session, samples, declared)
    assert axes == expected[1]
    for got, want in zip(outputs, expected[0], strict=True):
        assert got.dtype == np.float64 and got.shape == want.shape and np.array_equal(got, want)


CHILD_RESULT = """
import json, resource
import numpy as np
from mcbench.bench.isolate import call_in_child
out = call_in_child(np.ones, 25_000_000)
assert out.shape == (25_000_000,) and out[-1] == 1.0 and out.flags.writeable
# The parent's peak is its own memory's high-water mark (VmHWM), not ru_maxrss: Linux carries ru_maxrss across
# exec, so a process started from a large one (a pytest worker near 1 GB) would report that one's size.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"child_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, "bytes": out.nbytes,
                  "parent_peak": hwm * 1024}))
"""


def test_a_measuring_childs_result_crosses_to_the_parent_without_a_copy_of_it():
    """The child's 200 MB result cost it 634 MB when pickled into one message; sent as its own bytes, 234 MB. The
    parent received it as one message, held whole before it was copied into the array's buffer: twice its size
    (1 GiB more at the dataset limit); in 16 MiB chunks, once."""
    out = subprocess.run([sys.executable, "-c", CHILD_RESULT], capture_output=True, text=True, timeout=300,
                         check=True)
    measured = json.loads(out.stdout)
    assert measured["child_peak"] < 1.25 * measured["bytes"] + 64 * 2**20, measured
    assert measured["parent_peak"] < 1.25 * measured["bytes"] + 64 * 2**20, measured


def test_judging_the_outputs_takes_one_temporary_of_their_size():
    """accuracy_of on a classification with labels and a baseline peaked at 3.3 times the outputs (an argsort of a
    negated float64 copy for top-1, then |outputs - baseline| made twice and held while the per-class figures were
    computed); now one float64 difference, freed before them: a run on 2^21 samples of [N, 3] went from 346 MiB
    to 228 MiB in the parent."""
    from mcbench.bench.accuracy import accuracy_of
    from mcbench.bench.datasets import check_class_labels

    rows = 200_000
    outputs = np.zeros((rows, 3))
    outputs[np.arange(rows), np.arange(rows) % 3] = 1.0  # argmax: the row's class
    baseline = outputs.copy()
    baseline[:10] = 0.25  # ten rows where the baseline's argmax is class 0 and differs by 0.75 at most
    labels = np.arange(rows) % 3
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        check_class_labels("data.npz", labels, outputs)
        got = accuracy_of(outputs, baseline, labels, "data.npz", "classification")
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert got.top1 == 1.0 and got.max_abs_diff == 0.75 and got.per_class == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert got.agreement == 1 - 6 / rows  # rows 1, 2, 4, 5, 7, 8 of the first ten: the baseline says class 0
    assert peak < 1.25 * outputs.nbytes, f"peak {peak} bytes for {outputs.nbytes} bytes of outputs"
