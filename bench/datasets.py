"""Datasets for accuracy: an `.npz` file with one array per model input plus `labels`.

Each input array holds N samples along its first axis; the model's batch size (the first dimension
of its input shape) decides how many go into one inference. `labels` has N entries along its first
axis: class ids for classification, target values for regression, reference vectors for embeddings.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcbench.optimizer.artifact import InputSpec
from mcbench.reports.errors import UserError


class DatasetError(UserError, ValueError):
    """A dataset that does not fit the model; the message names the file and the array."""


@dataclass
class Dataset:
    name: str
    samples: list[dict[str, np.ndarray]]  # one feed dict per inference
    labels: np.ndarray | None  # one entry per sample row (N of them), or None


def load_npz(path: Path, specs: tuple[InputSpec, ...]) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"cannot load dataset {path}: no such file")
    wanted = {s.name for s in specs} | {"labels"}
    try:
        declared = _declared_sizes(path, wanted)
        with np.load(path, allow_pickle=False) as data:
            names = sorted(data.files)
            arrays = {k: data[k] for k in names if k in declared}  # arrays the model does not name stay packed
    except DatasetError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"cannot load dataset {path}: not a readable .npz file ({exc})") from exc
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise DatasetError(
            f"cannot load dataset {path}: no array for input(s) {', '.join(missing)} "
            f"(arrays: {', '.join(names) or 'none'})"
        )
    count = _common_count(path, specs, arrays)
    batch = specs[0].shape[0]
    usable = count - count % batch
    if usable == 0:
        raise DatasetError(f"cannot load dataset {path}: {count} samples, fewer than one batch of {batch}")
    samples = [
        {s.name: arrays[s.name][i : i + batch].astype(s.dtype, copy=False) for s in specs}
        for i in range(0, usable, batch)
    ]
    labels = _numeric_labels(path, arrays.get("labels"))
    if labels is not None:
        if len(labels) != count:
            raise DatasetError(f"cannot load dataset {path}: {len(labels)} labels for {count} samples")
        labels = labels[:usable]
    return Dataset(f"{path.name} ({usable} samples)", samples, labels)


def _numeric_labels(path: Path, labels: np.ndarray | None) -> np.ndarray | None:
    """Labels are finite numbers (class ids or regression targets); the classes' range is checked on the outputs."""
    if labels is None:
        return None
    if labels.dtype.kind not in "biuf":
        raise DatasetError(f"cannot load dataset {path}: 'labels' holds {labels.dtype} values, not numbers")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise DatasetError(f"cannot load dataset {path}: 'labels' holds NaN or infinite values")
    return labels


def check_class_labels(source: object, labels: np.ndarray | None, outputs: np.ndarray) -> None:
    """A classification's labels are class ids within the outputs' classes (the last axis), else a DatasetError."""
    if labels is None or outputs.ndim < 2:
        return
    classes = outputs.shape[-1]
    ids = np.asarray(labels).reshape(-1)
    bad = ids[(ids < 0) | (ids >= classes) | (ids != np.floor(ids))]
    if bad.size:
        raise DatasetError(f"{source}: label {bad[0].item():g} is not a class id of the model's {classes} classes "
                           f"(0 to {classes - 1})")


MAX_DATASET_BYTES_ENV = "MCBENCH_MAX_DATASET_BYTES"
MAX_DATASET_BYTES = 2**30  # all the arrays the model uses, unpacked


def max_dataset_bytes() -> int:
    """The largest dataset, unpacked, that mcbench loads (docs/reliability-and-security.md, Limits)."""
    text = os.environ.get(MAX_DATASET_BYTES_ENV, "")
    return int(text) if text.isdigit() and len(text) < 19 else MAX_DATASET_BYTES


def _declared_sizes(path: Path, wanted: set[str]) -> dict[str, int]:
    """The unpacked size of each wanted array, from the zip directory and the .npy headers, before loading any.

    An array whose header claims more bytes than its entry holds, or a total over the limit, is refused here,
    so neither a lying header nor a zip bomb allocates anything.
    """
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in wanted:
                continue
            with archive.open(info) as stream:
                version = np.lib.format.read_magic(stream)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(stream)
                needed = math.prod(shape) * dtype.itemsize
                if needed > info.file_size - stream.tell():
                    raise DatasetError(f"cannot load dataset {path}: array {name!r} claims shape {list(shape)[:8]}, "
                                       f"{needed} bytes, but holds {info.file_size - stream.tell()}")
            sizes[name] = needed
    total, limit = sum(sizes.values()), max_dataset_bytes()
    if total > limit:
        raise DatasetError(f"cannot load dataset {path}: its arrays unpack to {total} bytes, over the limit of "
                           f"{limit} (set {MAX_DATASET_BYTES_ENV} to raise it)")
    return sizes


def _common_count(path: Path, specs: tuple[InputSpec, ...], arrays: dict[str, np.ndarray]) -> int:
    """Every input array must be (N, *per-sample shape) with the same N."""
    counts = set()
    for spec in specs:
        array = arrays[spec.name]
        expected = tuple(spec.shape[1:])
        if array.ndim != len(spec.shape) or tuple(array.shape[1:]) != expected:
            raise DatasetError(
                f"cannot load dataset {path}: array {spec.name!r} has shape {list(array.shape)}, "
                f"expected [N, {', '.join(map(str, expected))}] for input shape {list(spec.shape)}"
            )
        if np.issubdtype(array.dtype, np.floating) != (spec.dtype.startswith("float")):
            raise DatasetError(
                f"cannot load dataset {path}: array {spec.name!r} is {array.dtype}, the input is {spec.dtype}"
            )
        counts.add(len(array))
    if len(counts) > 1:
        raise DatasetError(f"cannot load dataset {path}: input arrays hold different sample counts {sorted(counts)}")
    return counts.pop()
