"""Peak memory of mcbench at its documented size limits (docs/reliability-and-security.md, Limits).

    python -m benchmarks.limits_memory results     # load a results.json at the results-file limit
    python -m benchmarks.limits_memory text        # tokenise a --text-file at the text-file limits (MiniLM folder)
    python -m benchmarks.limits_memory input N     # `mcbench run --quick` of a dynamic-batch model at --input x=N,4

Each case runs as a command whose whole process tree (the run's measuring children and servers too) is sampled
from /proc every 50 ms; the figure is the largest sum of proportional set sizes (PSS) seen: resident memory, a
page that several processes share counted once in all. Prints one line per case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pss_bytes(pid: int) -> int:
    """A process's proportional set size: its resident pages, a page shared by k processes counted 1/k (so the
    libraries every child maps are not counted once per child, as a sum of RSS would)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory_bytes(pid: int) -> int:
    """The memory of `pid` and every process below it, now (the sum of their PSS)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _pss_bytes(p)
        todo += [c for c, parent in parents.items() if parent == p]
    return total


def peak_of(command: list[str], cwd: Path) -> tuple[int, float, int]:
    """(peak bytes of the process tree, seconds, exit code) of `command`."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory_bytes(proc.pid))
        time.sleep(0.05)
    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
    if proc.returncode:
        print(f"  exit {proc.returncode}: {err[-1] if err else ''}", file=sys.stderr)
    return peak, time.perf_counter() - started, proc.returncode


def results_case(folder: Path) -> list[str]:
    """A results.json of one variant whose samples fill the results-file limit (floats: the costliest JSON)."""
    from mcbench.base.files import limit_of
    from mcbench.reports.schema import save_results
    from tests.test_report import sample_run

    path = folder / "results.json"
    save_results(sample_run(), path)
    data = json.loads(path.read_text())
    per = len(json.dumps([123.45, 123.45])) - len(json.dumps([123.45]))  # compact: the most floats a byte holds
    data["variants"][1]["latency"]["samples_us"] = [123.45] * ((limit_of("results file") - 200_000) // per)
    path.write_text(json.dumps(data))
    print(f"  results.json: {path.stat().st_size / 2**20:.1f} MiB", file=sys.stderr)
    return [sys.executable, "-c", f"from mcbench.reports.schema import load_results; load_results({str(path)!r})"]


def text_case(folder: Path) -> list[str]:
    """The text-file limits (16 MiB in 10,000 lines) tokenised for the MiniLM folder at the default 128 tokens."""
    from mcbench.base.files import limit_of
    from mcbench.optimizer.intake_hf import MAX_TEXT_LINES
    from tests.packaged_models import packaged_model

    words = ("the quick brown fox jumps over a lazy dog " * 400)
    line = words[: limit_of("text file") // MAX_TEXT_LINES - 1]
    path = folder / "texts.txt"
    path.write_text((line + "\n") * MAX_TEXT_LINES)
    model = packaged_model("minilm")
    code = ("from pathlib import Path; from mcbench.config import RunConfig; "
            "from mcbench.workload import user_workload; "
            f"user_workload(RunConfig(model={str(model)!r}, task='embedding', text_file=Path({str(path)!r})), "
            f"Path({str(folder / 'source')!r}))")
    return [sys.executable, "-c", code]


def input_case(folder: Path, elements: int) -> list[str]:
    """A quick run (no load test) of a dynamic-batch linear model at --input x=ELEMENTS/4,4."""
    from tests.conftest import make_linear_onnx

    model = make_linear_onnx(folder / "linear.onnx", batch="N")
    env_limit = f"MCBENCH_MAX_INPUT_ELEMENTS={elements}"
    return ["env", env_limit, sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--input",
            f"x={elements // 4},4", "--quick", "--no-load", "--no-cache", "--out", str(folder / "run")]


def main(argv: list[str]) -> None:
    case = argv[0]
    with tempfile.TemporaryDirectory(prefix="mcbench-limits-") as tmp:
        folder = Path(tmp)
        command = {"results": lambda: results_case(folder), "text": lambda: text_case(folder),
                   "input": lambda: input_case(folder, int(argv[1]))}[case]()
        peak, seconds, code = peak_of(command, ROOT)
    print(f"{' '.join(argv)}: peak {peak / 2**20:.0f} MiB, {seconds:.0f} s, exit {code}")


if __name__ == "__main__":
    main(sys.argv[1:])
