"""Output roles on real trained models (issue 28): a detector whose class scores collapse, a CTC recogniser.

- NudeNet's YOLOv8n detector (one output [N, 4 + 18, 2100]) on two real photos (scikit-learn's sample images,
  cropped and resized to 320 px). The collapsed variant is the same graph with its score rows multiplied by 0
  (an edit of the graph, not a quantization: static INT8 collapsed them so on the issue author's host and not
  on every host); its boxes are untouched, so one relative error over the tensor barely sees it.
- ddddocr's CTC recogniser (output time-major [T, 1, 8210], declared [1, seqlen]) on text lines rendered with
  Pillow as ddddocr feeds them (64 px high, grayscale, scaled to [0, 1]), through `mcbench run`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.packaged_models import packaged_model

pytestmark = pytest.mark.slow


def photos(size: int = 320) -> list[dict[str, np.ndarray]]:
    """Three square crops of each of scikit-learn's two sample photos, [1, 3, size, size] in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    feeds = []
    for image in load_sample_images().images:
        h, w, _ = image.shape
        for left in (0, (w - h) // 2, w - h):
            crop = Image.fromarray(image).crop((left, 0, left + h, h)).resize((size, size))
            feeds.append({"images": (np.asarray(crop, np.float32).transpose(2, 0, 1) / 255)[None]})
    return feeds


def text_lines(texts: list[str], width: int = 160) -> np.ndarray:
    """[N, 1, 64, width] grayscale lines of black text on white, scaled to [0, 1] (ddddocr's own preprocessing)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 40)
    except OSError:
        font = ImageFont.load_default(size=40)
    lines = []
    for text in texts:
        image = Image.new("L", (width, 64), 255)
        ImageDraw.Draw(image).text((5, 8), text, fill=0, font=font)
        lines.append(np.asarray(image, np.float32)[None] / 255)
    return np.stack(lines)


def collapsed_scores(model: Path, out: Path) -> Path:
    """The detector with its output's score rows (4..) multiplied by 0: a dead detector with intact boxes."""
    import onnx
    from onnx import helper, numpy_helper

    graph_model = onnx.load(str(model))
    graph = graph_model.graph
    name = graph.output[0].name
    rows = graph.output[0].type.tensor_type.shape.dim[1].dim_value  # 22
    mask = np.zeros((1, rows, 1), np.float32)
    mask[:, :4] = 1
    graph.initializer.append(numpy_helper.from_array(mask, "score_mask"))
    for node in graph.node:  # the output's producer now writes to an inner name
        node.output[:] = [f"{name}_raw" if o == name else o for o in node.output]
    graph.node.append(helper.make_node("Mul", [f"{name}_raw", "score_mask"], [name]))
    onnx.save(graph_model, str(out))
    return out


def test_a_nudenet_variant_whose_class_scores_collapse_fails_the_default_budget(tmp_path):
    from mcbench.bench.accuracy import accuracy_of, collected
    from mcbench.bench.roles import output_roles
    from mcbench.optimizer.intake import InputOverride, load_onnx
    from mcbench.optimizer.targets import Target, open_session
    from mcbench.reports.quality import quality_metric, within_budget
    from mcbench.reports.schema import LatencyStats, RunResult, VariantResult

    model = packaged_model("nudenet") / "320n.onnx"
    dead_model = collapsed_scores(model, tmp_path / "collapsed.onnx")
    feeds = photos()

    def outputs_of(path: Path, runtime: str):
        artifact = load_onnx(path, {"images": InputOverride((1, 3, 320, 320))})
        session = open_session(artifact, Target(runtime, threads=2))
        return collected(session, feeds), list(session.output_names)

    ((base,), axes), names = outputs_of(model, "onnxruntime")
    roles = output_roles(names, [base], None, axes)
    assert [(r.role, r.batch_axis) for r in roles] == [("yolov8", 0)] and base.shape == (6, 22, 2100)
    (ov,), _ = outputs_of(model, "openvino")[0]
    (dead,), _ = outputs_of(dead_model, "onnxruntime")[0]
    assert np.all(dead[:, 4:] == 0) and np.array_equal(dead[:, :4], base[:, :4])
    scored = {name: accuracy_of(out, base, None, "photos", "fidelity", roles=roles)
              for name, out in {"ort-fp32": base, "ov-fp32": ov, "collapsed": dead}.items()}
    assert scored["collapsed"].metrics["output0.det_f1"] == 0 and scored["collapsed"].metrics["worst_role"] == 0
    assert scored["collapsed"].metrics["output0.detections"] > 0  # the baseline does detect something
    assert scored["collapsed"].metrics["rel_mean_err"] < 0.2  # what one relative error over the tensor said
    assert scored["ov-fp32"].metrics["worst_role"] == 1.0  # a lossless conversion keeps every detection and box
    timing = LatencyStats.from_seconds([0.01] * 20)
    run = RunResult("r", "2026-12-07T00:00:00+00:00", {}, {"task": "fidelity"}, {},
                    [VariantResult(n, "onnxruntime", [], "ok", accuracy=a, latency=timing) for n, a in scored.items()],
                    baseline="ort-fp32")
    assert quality_metric(run).key == "worst_role"
    assert within_budget(run, run.variant("collapsed")) is False and within_budget(run, run.variant("ov-fp32")) is True


TEXTS = ["hello", "world", "mcbench", "abc123", "OCR test", "x7k9", "python", "model", "quant", "42"]


def test_a_ddddocr_variant_that_keeps_the_decoded_text_passes_and_samples_count_inputs(tmp_path):
    data = tmp_path / "lines.npz"
    np.savez(data, input1=text_lines(TEXTS), labels=np.zeros(len(TEXTS), np.int64))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model",
                           str(packaged_model("ddddocr") / "common.onnx"), "--input", "input1=1,1,64,160",
                           "--dataset", str(data), "--variants", "ort-fp32,ov-fp32", "--no-load", "--quick",
                           "--metric", "tests.roles_metric:rows", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "output '387' (batch axis 1): sequence (a [N, 20, 8210] sequence of 8210 class values per step)" in (
        proc.stdout + proc.stderr)
    results = json.loads((out / "results.json").read_text())
    acc = {v["name"]: v["accuracy"] for v in results["variants"]}
    ov = acc["ov-fp32"]
    assert ov["samples"] == len(TEXTS)  # ten lines, not 20 steps x 10
    assert ov["metrics"]["metric_rows"] == len(TEXTS) and ov["metrics"]["metric_steps"] == 20  # batch first
    assert ov["roles"]["387"] == {"role": "sequence", "batch_axis": 1,
                                  "reason": "a [N, 20, 8210] sequence of 8210 class values per step"}
    assert ov["metrics"]["387.sequence_agreement"] == 1.0 and ov["metrics"]["worst_role"] == 1.0
    assert "quality: agreement with the baseline of the worst output, judged by its role" in proc.stdout
    assert next(line for line in proc.stdout.splitlines() if line.startswith("ov-fp32")).split()[1] == "ok"
