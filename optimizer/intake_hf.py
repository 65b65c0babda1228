"""Hugging Face folders in: a model saved with `save_pretrained`, read from local files only.

The folder's `config.json` says the architecture; the task says which output a run measures:
- a text encoder with `--task embedding`: the mean of the last hidden states over the attention mask,
  L2-normalised (what sentence-transformers' mean-pooling models return);
- `*ForSequenceClassification` (classification or regression) and `*ForImageClassification`: the logits.
Inputs come from the config and the folder's tokenizer: `input_ids`, `attention_mask` (and `token_type_ids`
where the tokenizer makes them) of shape (1, seq_len), or `pixel_values` (1, channels, size, size).

The weights are read once, here, and saved as a state_dict beside the run; every later stage (export,
pruning, the torch baseline in its child process) rebuilds the architecture from the config recorded in
the artifact's factory arguments (`hf_module`), so no stage reads the folder again and none can reach a hub.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.base.files import FileError, read_bytes, read_text
from mcbench.base.parsing import ParseError, json_data
from mcbench.base.text import first_line
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.intake import InputOverride, IntakeError

HF_EXTRA_HINT = "install the Hugging Face extra: pip install 'mcbench[hf]'"
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the wrapper's forward() order
FACTORY = "mcbench.optimizer.intake_hf:hf_module"


def is_hf_folder(ref: str) -> bool:
    """Whether `--model` names a folder as `save_pretrained` writes it (a config.json inside)."""
    path = Path(ref)
    return path.is_dir() and (path / "config.json").is_file()


@dataclass(frozen=True)
class HfModel:
    """What a folder holds, as far as a run needs it."""

    folder: Path
    config: dict[str, Any]
    head: str  # "embedding" or "logits"
    modality: str  # "text" or "image"

    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or []
        return archs[0] if archs else str(self.config.get("model_type", "unknown architecture"))


def transformers_module() -> Any:
    """transformers, imported offline; a missing install is one line naming the extra."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local files only: never a network call
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise IntakeError(f"a Hugging Face folder needs transformers: {HF_EXTRA_HINT}") from None
    transformers.logging.set_verbosity_error()
    return transformers


def inspect_folder(folder: Path, task: str) -> HfModel:
    """The folder's config and which output the task measures; an IntakeError says what does not fit."""
    path = folder / "config.json"
    try:
        config = json_data(read_bytes(path, "config"), str(path))  # bounded; a FIFO is refused
    except ParseError as exc:
        raise IntakeError(f"cannot load {folder}: {exc}") from None
    except (OSError, FileError) as exc:  # not a regular file, over its limit, unreadable
        raise IntakeError(f"cannot load {folder}: config.json is not readable ({first_line(exc)})") from None
    if not isinstance(config, dict):
        raise IntakeError(f"cannot load {folder}: config.json is not a JSON object")
    if config.get("auto_map"):
        raise IntakeError(f"cannot load {folder}: its config names custom code (auto_map); mcbench loads only "
                          "architectures built into transformers and never runs code from a model folder")
    archs = [str(a) for a in config.get("architectures") or []]
    modality = "image" if any(a.endswith("ForImageClassification") for a in archs) else "text"
    model = HfModel(folder, config, "logits", modality)
    if task == "embedding":
        if modality == "image":
            raise IntakeError(f"cannot load {folder}: --task embedding takes a text encoder, not {model.architecture}")
        return HfModel(folder, config, "embedding", modality)
    if not any(a.endswith(("ForSequenceClassification", "ForImageClassification")) for a in archs):
        raise IntakeError(
            f"cannot load {folder}: {model.architecture} has no classification head; run it with --task embedding "
            "for its mean-pooled sentence embedding"
        )
    return model


def from_hf_folder(folder: Path, task: str, seq_len: int, inputs: dict[str, InputOverride],
                   out_dir: Path) -> Artifact:
    """The folder's model with the task's output, its weights saved as a state_dict in `out_dir`."""
    from mcbench.base.imports import require
    from mcbench.optimizer.intake_torch import override_spec

    folder = Path(folder)
    model = inspect_folder(folder, task)
    transformers = transformers_module()
    torch = require("torch")
    try:
        loaded = _auto_class(transformers, model).from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError ... for a damaged folder
        raise IntakeError(f"cannot load {folder}: transformers could not read it ({first_line(exc)})") from None
    names = _input_names(transformers, model)
    wrapper = _wrap(torch, loaded, model.head, names)
    specs = tuple(override_spec(s.name, inputs[s.name], s.dtype) if s.name in inputs else s
                  for s in default_specs(model, names, seq_len))
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise IntakeError(f"cannot load {folder}: --input {', '.join(unknown)} is not one of its inputs "
                          f"({', '.join(names)})")
    _check_positions(model, specs, "--input" if inputs else "--seq-len")
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = out_dir / "weights.pt"
    torch.save(wrapper.state_dict(), saved)
    args = {"config": model.config, "head": model.head, "inputs": list(names)}
    return Artifact(saved, "torch", specs, factory=FACTORY, factory_args=args)


def _check_positions(model: HfModel, specs: tuple[InputSpec, ...], flag: str) -> None:
    """A text model's sequence within its position embeddings: past them the baseline and the export both fail."""
    limit = model.config.get("max_position_embeddings")
    if model.modality != "text" or not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return
    length = max((s.shape[1] for s in specs if len(s.shape) > 1 and isinstance(s.shape[1], int)), default=0)
    if length > limit:
        said = f"--seq-len {length}" if flag == "--seq-len" else f"an --input sequence of {length}"
        raise IntakeError(f"cannot load {model.folder}: {said} is past the model's {limit} positions "
                          f"(max_position_embeddings); give {flag} {limit} or less")


def default_specs(model: HfModel, names: tuple[str, ...], seq_len: int) -> tuple[InputSpec, ...]:
    """Batch 1: token ids over the vocabulary with an all-ones mask, or an image of the config's size."""
    cfg = model.config
    if model.modality == "image":
        size = cfg.get("image_size", 224)
        size = tuple(size) if isinstance(size, list) else (size, size)
        return (InputSpec("pixel_values", (1, int(cfg.get("num_channels", 3)), *map(int, size)), "float32"),)
    ranges = {"input_ids": (0, int(cfg.get("vocab_size", 30522))), "attention_mask": (1, 2), "token_type_ids": (0, 1)}
    return tuple(InputSpec(n, (1, seq_len), "int64", *ranges[n]) for n in names)


def hf_module(config: dict[str, Any], head: str, inputs: list[str]) -> Any:
    """The architecture from a recorded config.json, untrained, wrapped to return the task's output.

    The factory every stage calls; the run's state_dict then fills in the weights.
    """
    transformers = transformers_module()
    torch = __import__("torch")
    model = HfModel(Path("."), config, head, "image" if inputs == ["pixel_values"] else "text")
    fields = {k: v for k, v in config.items() if k != "model_type"}
    auto_config = transformers.AutoConfig.for_model(config["model_type"], **fields)
    return _wrap(torch, _auto_class(transformers, model).from_config(auto_config), head, tuple(inputs))


def _auto_class(transformers: Any, model: HfModel) -> Any:
    if model.modality == "image":
        return transformers.AutoModelForImageClassification
    if model.head == "embedding":
        return transformers.AutoModel
    return transformers.AutoModelForSequenceClassification


def _input_names(transformers: Any, model: HfModel) -> tuple[str, ...]:
    """pixel_values for an image model; else what the folder's tokenizer makes, in the wrapper's order."""
    if model.modality == "image":
        return ("pixel_values",)
    made = set(load_tokenizer(model.folder).model_input_names)
    return tuple(n for n in TEXT_INPUTS if n in made or n == "input_ids")


def load_tokenizer(folder: Path) -> Any:
    transformers = transformers_module()
    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise IntakeError(f"cannot load the tokenizer of {folder}: {first_line(exc)}") from None


def _wrap(torch: Any, model: Any, head: str, names: tuple[str, ...]) -> Any:
    """A module whose forward takes the inputs positionally, in `names` order, and returns one tensor."""

    class HfTask(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.head = head
            self.names = names

        def forward(self, *tensors):
            feeds = dict(zip(self.names, tensors, strict=True))
            out = self.model(**feeds)
            if self.head == "logits":
                return out.logits
            mask = feeds["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return HfTask().eval()


def text_samples(folder: Path, lines: list[str], specs: tuple[InputSpec, ...]) -> list[dict[str, np.ndarray]]:
    """Each line tokenised to the inputs' sequence length (padded, truncated), grouped by the inputs' batch."""
    tokenizer = load_tokenizer(folder)
    batch, seq_len = specs[0].shape[0], specs[0].shape[1]
    try:
        encoded = tokenizer(lines, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    except Exception as exc:  # the Rust tokenizers raise a bare Exception (a vocab.txt without [UNK])
        raise IntakeError(f"the tokenizer of {folder} failed on the texts: {first_line(exc)}") from None
    usable = len(lines) - len(lines) % batch
    return [{s.name: np.asarray(encoded[s.name][i:i + batch], dtype=s.dtype) for s in specs}
            for i in range(0, usable, batch)]


MAX_TEXT_LINES = 10_000  # one sample a line: every variant scores them all; tokenised, 300k lines took 3.6 GB
MAX_LINE_CHARS = 10_000  # a sequence's tokens are shorter than this; a tokenizer takes a 50 MB line whole (8.5 GB)


def read_lines(path: Path, what: str) -> list[str]:
    """The file's non-empty lines, within the text-file limits (bytes: mcbench.base.files; lines and their length here),
    checked before anything is tokenised; an IntakeError for a missing, empty or oversized file."""
    try:
        text = read_text(path, "text file")
    except FileError as exc:
        raise IntakeError(f"cannot read {what} {exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    long = next((i for i, line in enumerate(lines, start=1) if len(line) > MAX_LINE_CHARS), None)
    if long is not None:
        raise IntakeError(f"cannot read {what} {path}: line {long} has {len(lines[long - 1]):,} characters; "
                          f"at most {MAX_LINE_CHARS:,}")
    lines = [line for line in lines if line]
    if not lines:
        raise IntakeError(f"cannot read {what} {path}: the file has no lines")
    if len(lines) > MAX_TEXT_LINES:
        raise IntakeError(f"cannot read {what} {path}: {len(lines):,} lines; at most {MAX_TEXT_LINES:,} "
                          "(a line is one sample)")
    return lines


def parse_labels(lines: list[str], config: dict[str, Any], task: str, source: Path) -> np.ndarray:
    """Class ids (numbers, or names the config's label2id knows) or, for regression, numbers."""
    if task == "regression":
        return np.array([_finite_label(text, n, source) for n, text in enumerate(lines, 1)])
    names = {str(k): int(v) for k, v in (config.get("label2id") or {}).items()}
    classes = len(config.get("id2label") or {}) or config.get("num_labels")
    ids = []
    for n, text in enumerate(lines, 1):
        if text in names:
            ids.append(names[text])
        elif _CLASS_ID.match(text):
            ids.append(_class_id(text, n, classes, source))
        else:
            known = ", ".join(sorted(names)) or "none"
            raise IntakeError(f"cannot read labels {source}: line {n} {text[:40]!r} is neither a class id nor a "
                              f"label name (known: {known})")
    return np.array(ids, dtype=np.int64)


_CLASS_ID = re.compile(r"-?[0-9]+")  # ASCII digits: str.isdigit() takes '²', which int() refuses


def _class_id(text: str, line: int, classes: Any, source: Path) -> int:
    """The id on a label line, within the model's classes (any id >= 0 where the config does not say how many)."""
    value = int(text) if len(text) <= 20 else None  # longer: out of any range, and int() may refuse it
    top = classes - 1 if isinstance(classes, int) and not isinstance(classes, bool) and classes > 0 else None
    if value is None or value < 0 or (top is not None and value > top):
        span = f"the model has {classes} classes: 0 to {top}" if top is not None else "class ids start at 0"
        raise IntakeError(f"cannot read labels {source}: line {line}: class id {text[:40]} is out of range ({span})")
    return value


def _finite_label(text: str, line: int, source: Path) -> float:
    try:
        value = float(text)
    except ValueError:
        raise IntakeError(f"cannot read labels {source}: line {line}: {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise IntakeError(f"cannot read labels {source}: line {line}: {text[:40]!r} is not a finite number")
    return value
