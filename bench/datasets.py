"""Datasets for accuracy: an `.npz` file with one array per model input plus `labels`.

Each input array holds N samples along the input's batch axis (the first, or the one the model declares: Silero
VAD's state [2, N, 128]); the model's batch size (the size of that axis in its input shape) decides how many go into
one inference. A 0-d array is a constant, given whole to every inference (a sample rate). `labels` has N entries
along its first axis: class ids for classification, target values for regression, reference vectors for embeddings.

The samples are cut from the arrays when they are used, never held one dict each: a dict of views cost about 350 bytes
a sample on top of its data, 22 times a sample of 4 floats, and a dataset at the 1 GiB limit did not fit in 16 GB
(issue 32, H9).
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcbench.base.errors import UserError
from mcbench.optimizer.artifact import InputSpec


class DatasetError(UserError):
    """A dataset that does not fit the model; the message names the file and the array."""


Feeds = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Samples(Sequence[Feeds]):
    """Feeds cut on demand from whole arrays: feed i holds rows [i*batch, (i+1)*batch) of each input along its own
    batch axis (the last feed may hold fewer), and every `fixed` input whole. Iterates as a list of feed dicts."""

    arrays: dict[str, np.ndarray]  # each batched input: `rows` samples along its batch axis
    axes: dict[str, int]  # each batched input's batch axis (and each filled one's)
    fixed: dict[str, np.ndarray]  # inputs without a batch axis, given whole to every feed (0-d inputs)
    batch: int
    rows: int
    filled: dict[str, np.ndarray] = field(default_factory=dict)  # constants with a batch axis: one row, repeated

    def __len__(self) -> int:
        return -(-self.rows // self.batch)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return self.rows_between(start * self.batch, min(max(stop, start) * self.batch, self.rows))
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        start = (index % len(self)) * self.batch
        return {**self._cut(start, min(start + self.batch, self.rows)), **self.fixed}

    def __iter__(self) -> Iterator[Feeds]:
        for start in range(0, self.rows, self.batch):  # as self[i], without its checks: once a sample, 2^26 times
            yield {**self._cut(start, min(start + self.batch, self.rows)), **self.fixed}

    def rows_between(self, start: int, stop: int) -> Samples:
        """The same samples' rows [start, stop), as views."""
        return Samples(self._cut(start, stop, contiguous=False), self.axes, self.fixed, self.batch, stop - start,
                       self.filled)

    def batched(self, size: int) -> Samples:
        """`size` consecutive feeds joined into one (the last may be smaller), without copying the arrays."""
        return Samples(self.arrays, self.axes, self.fixed, self.batch * size, self.rows, self.filled)

    def _cut(self, start: int, stop: int, contiguous: bool = True) -> Feeds:
        cut = {}
        for name, array in self.arrays.items():
            index = (slice(None),) * self.axes[name] + (slice(start, stop),)
            cut[name] = np.ascontiguousarray(array[index]) if contiguous else array[index]
        if contiguous:
            for name, row in self.filled.items():
                shape = list(row.shape)
                shape[self.axes[name]] = stop - start
                cut[name] = np.broadcast_to(row, shape).copy()
        return cut


@dataclass
class Dataset:
    name: str
    samples: Samples  # one feed dict per inference, cut when used
    labels: np.ndarray | None  # one entry per sample row (N of them), or None
    constants: dict[str, np.ndarray]  # inputs the dataset gives as 0-d arrays: the same value for every sample


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
    given_twice = [s.name for s in specs if s.value is not None and s.name in arrays and not _same(s, arrays[s.name])]
    if given_twice:
        raise DatasetError(f"cannot load dataset {path}: input(s) {', '.join(given_twice)} have a constant value "
                           "already (--const, or the --dataset's 0-d array) and another array here; give each once")
    missing = [s.name for s in specs if s.name not in arrays and s.value is None]
    if missing:
        raise DatasetError(
            f"cannot load dataset {path}: no array for input(s) {', '.join(missing)} "
            f"(arrays: {', '.join(names) or 'none'})"
        )
    count = _common_count(path, specs, arrays)
    batched = [s for s in specs if s.batch_axis is not None]
    batch = batched[0].batch if batched else 1
    usable = count - count % batch
    if usable == 0:
        raise DatasetError(f"cannot load dataset {path}: {count} samples, fewer than one batch of {batch}")
    constants = {s.name: arrays[s.name] for s in specs if s.name in arrays and arrays[s.name].ndim == 0}
    given = [s for s in batched if s.name in arrays and arrays[s.name].ndim]
    samples = Samples({s.name: _rows(s, arrays[s.name], usable) for s in given},
                      {s.name: s.batch_axis for s in batched},
                      {s.name: _filled(s, arrays.get(s.name), s.shape) for s in specs if s.batch_axis is None},
                      batch, usable,
                      {s.name: _filled(s, arrays.get(s.name), _one_row(s)) for s in batched if s not in given})
    labels = _numeric_labels(path, arrays.get("labels"))
    if labels is not None:
        if labels.ndim == 0 or len(labels) != count:
            raise DatasetError(f"cannot load dataset {path}: {labels.size} labels for {count} samples")
        labels = labels[:usable]
    return Dataset(f"{path.name} ({usable} samples)", samples, labels, constants)


def _same(spec: InputSpec, array: np.ndarray) -> bool:
    """Whether an array gives the value a constant input has already (the --dataset's 0-d array, read again from
    --calibration-data)."""
    return array.ndim == 0 and array.item() == spec.value


def _rows(spec: InputSpec, array: np.ndarray, usable: int) -> np.ndarray:
    """The input's first `usable` samples along its batch axis, in its dtype: a view of the dataset's array where its
    dtype is the input's."""
    index = (slice(None),) * spec.batch_axis + (slice(0, usable),)
    return array[index].astype(spec.dtype, copy=False)


def _one_row(spec: InputSpec) -> tuple[int, ...]:
    """The input's shape with one sample on its batch axis."""
    return tuple(1 if i == spec.batch_axis else d for i, d in enumerate(spec.shape))


def _filled(spec: InputSpec, array: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """A constant (a 0-d array of the dataset, or the --const value) filling `shape`."""
    value = np.asarray(spec.value if array is None else array).astype(spec.dtype)
    return np.broadcast_to(value, shape).copy()  # not ascontiguousarray: it makes a 0-d array 1-d


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
    outside = (ids < 0) | (ids >= classes)
    bad = ids[outside if ids.dtype.kind in "biu" else outside | (ids != np.floor(ids))]
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
    """Every batched input array must be the input's shape with N along its batch axis, with the same N; a 0-d
    array is a constant and counts none."""
    counts = set()
    for spec in specs:
        array = arrays.get(spec.name)
        if array is None:
            continue
        if np.issubdtype(array.dtype, np.floating) != (spec.dtype.startswith("float")):
            raise DatasetError(
                f"cannot load dataset {path}: array {spec.name!r} is {array.dtype}, the input is {spec.dtype}"
            )
        if array.ndim == 0:
            continue
        axis = spec.batch_axis
        expected = [str(d) for d in spec.shape]
        if axis is not None:
            expected[axis] = "N"
        matches = axis is not None and array.ndim == len(spec.shape) and all(
            a == d for i, (a, d) in enumerate(zip(array.shape, spec.shape, strict=True)) if i != axis)
        if not matches:
            raise DatasetError(
                f"cannot load dataset {path}: array {spec.name!r} has shape {list(array.shape)}, "
                f"expected [{', '.join(expected)}] for input shape {list(spec.shape)}"
                + ("" if axis is not None else " (a 0-d array gives one value for every sample)")
            )
        counts.add(array.shape[axis])
    if len(counts) > 1:
        raise DatasetError(f"cannot load dataset {path}: input arrays hold different sample counts {sorted(counts)}")
    if not counts:
        raise DatasetError(f"cannot load dataset {path}: no input array holds samples (all are 0-d)")
    return counts.pop()
