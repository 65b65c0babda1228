"""What a model brings to a run: the base artifact, evaluation samples, labels and calibration data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.artifact import Artifact, InputSpec, generated_inputs
from optimizer.intake import InputOverride, load_onnx

GENERATED_EVAL_SAMPLES = 32
GENERATED_CALIBRATION_SAMPLES = 64
DEMO_CALIBRATION_SAMPLES = 128

Feeds = dict[str, np.ndarray]


@dataclass
class Workload:
    name: str
    base: Artifact
    eval_samples: list[Feeds]
    labels: np.ndarray | None
    dataset: str | None  # None: fidelity only, on generated inputs
    calibration: list[Feeds]
    calibration_source: str
    timing_feeds: Feeds
    from_torch: bool
    info: dict[str, Any]


def demo_workload(work_dir: Path, quick: bool) -> Workload:
    """Train the digits CNN; evaluate on the held-out split, calibrate on training samples."""
    from mcbench.demo import DEMO_FACTORY, INPUT_NAME, INPUT_SHAPE, train_demo

    trained = train_demo(work_dir, epochs=10 if quick else 15)
    data = trained.data
    spec = InputSpec(INPUT_NAME, INPUT_SHAPE, "float32")
    base = Artifact(trained.weights, "torch", (spec,), factory=DEMO_FACTORY)
    return Workload(
        name="digits-cnn",
        base=base,
        eval_samples=[{INPUT_NAME: x[None]} for x in data.x_test],
        labels=data.y_test,
        dataset=f"sklearn digits, held-out split ({len(data.y_test)} images)",
        calibration=[{INPUT_NAME: x[None]} for x in data.x_train[:DEMO_CALIBRATION_SAMPLES]],
        calibration_source=f"{DEMO_CALIBRATION_SAMPLES} digits training images",
        timing_feeds={INPUT_NAME: data.x_test[0][None]},
        from_torch=True,
        info={
            "name": "digits-cnn",
            "source": "built-in demo",
            "factory": DEMO_FACTORY,
            "train_images": len(data.y_train),
            "test_images": len(data.y_test),
            "train_seconds": round(trained.train_seconds, 2),
            "epochs": trained.epochs,
            "inputs": [spec.to_dict()],
        },
    )


def onnx_workload(path: Path, inputs: dict[str, InputOverride]) -> Workload:
    """A user's ONNX file with no dataset: fidelity to the FP32 baseline on generated inputs."""
    base = load_onnx(path, inputs)
    eval_samples = generated_inputs(base.inputs, GENERATED_EVAL_SAMPLES, seed=1)
    return Workload(
        name=path.stem,
        base=base,
        eval_samples=eval_samples,
        labels=None,
        dataset=None,
        calibration=generated_inputs(base.inputs, GENERATED_CALIBRATION_SAMPLES, seed=2),
        calibration_source=f"{GENERATED_CALIBRATION_SAMPLES} generated inputs (no dataset given)",
        timing_feeds=eval_samples[0],
        from_torch=False,
        info={
            "name": path.stem,
            "source": "onnx file",
            "path": str(path),
            "size_bytes": path.stat().st_size,
            "inputs": [s.to_dict() for s in base.inputs],
        },
    )
