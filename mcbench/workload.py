"""What a model brings to a run: the base artifact, evaluation samples, labels and calibration data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mcbench.bench.datasets import Dataset, load_npz
from mcbench.optimizer.artifact import Artifact, InputSpec, generated_inputs, how_generated, input_shapes
from mcbench.optimizer.graph_stats import model_stats
from mcbench.optimizer.intake import InputConstant, IntakeError, load_onnx, with_constants
from mcbench.optimizer.intake_torch import PICKLE_SUFFIXES, from_factory, from_pickle, from_pt2, is_factory_ref

if TYPE_CHECKING:
    from mcbench.config import RunConfig

GENERATED_EVAL_SAMPLES = 32
GENERATED_CALIBRATION_SAMPLES = 64
DEMO_CALIBRATION_SAMPLES = 128

Feeds = dict[str, np.ndarray]


@dataclass
class Workload:
    name: str
    base: Artifact
    eval_samples: Sequence[Feeds]
    labels: np.ndarray | None
    dataset: str | None  # None: fidelity only, on generated inputs
    calibration: Sequence[Feeds]
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


def user_workload(config: RunConfig, source_dir: Path) -> Workload:
    """A user's model from any source; accuracy on its dataset (an .npz, or a text file for a Hugging Face
    text model) if given, else fidelity on generated inputs."""
    ref = config.model
    base, source = load_user_model(config, source_dir)
    base = with_constants(base, config.consts)
    name = ref.rpartition(":")[2] if source == "pytorch factory" else Path(ref).stem
    if config.dataset is not None:
        data = load_npz(config.dataset, base.inputs)
        base = with_constants(base, dataset_constants(data), f"--dataset {config.dataset.name}:")
        eval_samples, labels, dataset_name = data.samples, data.labels, data.name
        calibration, calibration_source = scored_calibration(eval_samples, config.dataset.name)
    elif config.text_file is not None:
        eval_samples, labels, dataset_name = text_dataset(config, base)
        calibration, calibration_source = scored_calibration(eval_samples, config.text_file.name)
    else:
        eval_samples = generated_inputs(base.inputs, GENERATED_EVAL_SAMPLES, seed=1)
        labels, dataset_name = None, None
        calibration = generated_inputs(base.inputs, GENERATED_CALIBRATION_SAMPLES, seed=2)
        calibration_source = f"{GENERATED_CALIBRATION_SAMPLES} generated inputs (no dataset given)"
    if config.calibration_data is not None:
        calibration, calibration_source = calibration_samples(config, base)
    info: dict[str, Any] = {"name": name, "source": source, "reference": ref,
                            "inputs": [s.to_dict() for s in base.inputs]}
    if base.factory_args and "config" in base.factory_args:
        info["architecture"] = (base.factory_args["config"].get("architectures") or ["?"])[0]
        info["head"] = base.factory_args["head"]
    if base.format == "onnx":
        info.update(model_stats(base.path, input_shapes(base.inputs)))
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


def input_warnings(workload: Workload) -> list[str]:
    """What the run's warnings say of inputs mcbench made rather than read: each generated input and how, and each
    constant, so that a figure measured on made-up inputs is not taken for one on real data."""
    specs = workload.base.inputs
    if workload.dataset is None:
        return ["generated inputs: " + "; ".join(how_generated(s) for s in specs)]
    constants = [s for s in specs if s.value is not None]
    return ["constant inputs: " + "; ".join(how_generated(s) for s in constants)] if constants else []


def dataset_constants(data: Dataset) -> dict[str, InputConstant]:
    """A dataset's 0-d arrays as constants: every input generated later (timing, serving, a pass's check) takes them."""
    return {name: InputConstant(array.item()) for name, array in data.constants.items()}


def scored_calibration(eval_samples: Sequence[Feeds], name: str) -> tuple[Sequence[Feeds], str]:
    """Without --calibration-data, static INT8 calibrates on the first scored samples; its source says so, because
    a variant calibrated on what it is scored on can read better than it will do on new data."""
    calibration = eval_samples[:DEMO_CALIBRATION_SAMPLES]
    return calibration, (f"the first {len(calibration)} of {name}'s scored samples (give --calibration-data for a "
                         "separate set)")


def calibration_samples(config: RunConfig, base: Artifact) -> tuple[Sequence[Feeds], str]:
    """--calibration-data: an .npz with one array per input (like --dataset), or one text a line (like --text-file,
    for a Hugging Face text model)."""
    from mcbench.optimizer.intake_hf import read_lines, text_samples

    path = config.calibration_data
    if path.suffix == ".npz":
        samples = load_npz(path, base.inputs).samples
    elif is_hf_text_model(base):
        samples = text_samples(Path(config.model), read_lines(path, "--calibration-data"), base.inputs)
    else:
        raise IntakeError(f"--calibration-data {path}: an .npz with one array per model input (a text file only "
                          "for a Hugging Face text model)")
    if not samples:
        raise IntakeError(f"--calibration-data {path}: no samples")
    samples = samples[:DEMO_CALIBRATION_SAMPLES]
    return samples, f"{len(samples)} samples of {path.name}"


def is_hf_text_model(base: Artifact) -> bool:
    """A Hugging Face folder's model that takes token ids (texts are tokenised for it), from its intake record."""
    return bool(base.factory_args) and "config" in base.factory_args and base.inputs[0].name == "input_ids"


def text_dataset(config: RunConfig, base: Artifact) -> tuple[list[Feeds], np.ndarray | None, str]:
    """--text-file tokenised with the folder's tokenizer, and --labels read against its config."""
    from mcbench.optimizer.intake_hf import parse_labels, read_lines, text_samples

    if not is_hf_text_model(base):
        raise IntakeError("--text-file needs a Hugging Face text model folder as --model")
    lines = read_lines(config.text_file, "--text-file")
    samples = text_samples(Path(config.model), lines, base.inputs)
    if not samples:
        raise IntakeError(f"cannot read --text-file {config.text_file}: {len(lines)} lines, fewer than one batch")
    labels = None
    if config.labels_file is not None:
        label_lines = read_lines(config.labels_file, "--labels")
        if len(label_lines) != len(lines):
            raise IntakeError(f"--labels {config.labels_file}: {len(label_lines)} labels for {len(lines)} texts")
        labels = parse_labels(label_lines, base.factory_args["config"], config.task, config.labels_file)
        labels = labels[: len(samples) * base.inputs[0].shape[0]]
    count = len(samples) * base.inputs[0].shape[0]
    return samples, labels, f"{config.text_file.name} ({count} texts, {base.inputs[0].shape[1]} tokens)"


def load_user_model(config: RunConfig, source_dir: Path) -> tuple[Artifact, str]:
    """Dispatch on what `--model` names: a factory, a Hugging Face folder, an .onnx file, a .pt2 archive or a
    pickled module."""
    from mcbench.optimizer.intake_hf import from_hf_folder, is_hf_folder

    ref, inputs, weights, trust_model = config.model, config.inputs, config.weights, config.trust_model
    if is_hf_folder(ref):
        if weights is not None:
            raise IntakeError(f"--weights goes with --model package.module:factory; {ref} holds its own weights")
        return from_hf_folder(Path(ref), config.task, config.seq_len, inputs, source_dir), "hugging face folder"
    if is_factory_ref(ref):
        return from_factory(ref, weights, inputs, source_dir), "pytorch factory"
    path = Path(ref)
    if weights is not None:
        raise IntakeError(f"--weights goes with --model package.module:factory, not with a file ({path})")
    if path.is_dir():
        raise IntakeError(f"cannot load {path}: a folder without config.json (a Hugging Face folder, as "
                          "save_pretrained writes it, has one)")
    if not path.is_file():
        raise IntakeError(f"cannot load {path}: no such file")
    if path.suffix == ".onnx":
        return load_onnx(path, inputs), "onnx file"
    if path.suffix == ".pt2":
        return from_pt2(path, inputs), "torch.export archive"
    if path.suffix in PICKLE_SUFFIXES:
        return from_pickle(path, inputs, trust_model, source_dir), "pickled module (trusted)"
    raise IntakeError(
        f"cannot load {path}: unknown model format {path.suffix!r}; give an .onnx file, a Hugging Face folder, "
        "a .pt2 archive, a pickled module (.pt, with --trust-model) or package.module:factory"
    )
