"""What a model brings to a run: the base artifact, evaluation samples, labels and calibration data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.bench.datasets import load_npz
from mcbench.optimizer.artifact import Artifact, InputSpec, generated_inputs
from mcbench.optimizer.graph_stats import model_stats
from mcbench.optimizer.intake import InputOverride, IntakeError, load_onnx
from mcbench.optimizer.intake_torch import PICKLE_SUFFIXES, from_factory, from_pickle, from_pt2, is_factory_ref

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
    train: tuple[Feeds, np.ndarray] | None = None  # inputs (N, ...) by name and labels, for fine-tuning passes


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
        train=({INPUT_NAME: data.x_train}, data.y_train),
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


def user_workload(
    ref: str,
    inputs: dict[str, InputOverride],
    source_dir: Path,
    weights: Path | None = None,
    trust_model: bool = False,
    dataset: Path | None = None,
) -> Workload:
    """A user's model from any source; accuracy on `dataset` if given, else fidelity on generated inputs."""
    base, source = load_user_model(ref, inputs, source_dir, weights, trust_model)
    name = ref.rpartition(":")[2] if source == "pytorch factory" else Path(ref).stem
    if dataset is not None:
        data = load_npz(dataset, base.inputs)
        eval_samples, labels, dataset_name = data.samples, data.labels, data.name
        calibration, calibration_source = data.samples[:DEMO_CALIBRATION_SAMPLES], f"{dataset.name}"
    else:
        eval_samples = generated_inputs(base.inputs, GENERATED_EVAL_SAMPLES, seed=1)
        labels, dataset_name = None, None
        calibration = generated_inputs(base.inputs, GENERATED_CALIBRATION_SAMPLES, seed=2)
        calibration_source = f"{GENERATED_CALIBRATION_SAMPLES} generated inputs (no dataset given)"
    info: dict[str, Any] = {"name": name, "source": source, "reference": ref,
                            "inputs": [s.to_dict() for s in base.inputs]}
    if base.format == "onnx":
        info.update(model_stats(base.path, base.inputs))
    return Workload(
        name=name,
        base=base,
        eval_samples=eval_samples,
        labels=labels,
        dataset=dataset_name,
        calibration=calibration,
        calibration_source=calibration_source,
        timing_feeds=eval_samples[0],
        from_torch=base.format != "onnx",
        info=info,
    )


def load_user_model(
    ref: str, inputs: dict[str, InputOverride], source_dir: Path, weights: Path | None, trust_model: bool
) -> tuple[Artifact, str]:
    """Dispatch on what `--model` names: a factory, an .onnx file, a .pt2 archive or a pickled module."""
    if is_factory_ref(ref):
        return from_factory(ref, weights, inputs, source_dir), "pytorch factory"
    path = Path(ref)
    if weights is not None:
        raise IntakeError(f"--weights goes with --model package.module:factory, not with a file ({path})")
    if not path.is_file():
        raise IntakeError(f"cannot load {path}: no such file")
    if path.suffix == ".onnx":
        return load_onnx(path, inputs), "onnx file"
    if path.suffix == ".pt2":
        return from_pt2(path, inputs), "torch.export archive"
    if path.suffix in PICKLE_SUFFIXES:
        return from_pickle(path, inputs, trust_model, source_dir), "pickled module (trusted)"
    raise IntakeError(
        f"cannot load {path}: unknown model format {path.suffix!r}; give an .onnx file, a .pt2 archive, "
        "a pickled module (.pt, with --trust-model) or package.module:factory"
    )
