"""What each output of a model means (its role), and where its batch axis is.

A role decides which figure judges a variant's output against the baseline's (bench.metrics): the argmax of class
scores, the decoded text of a CTC sequence, the detections of a detector, the direction of an embedding, the
values of a regression or a state. Roles are inferred once, on the baseline's outputs (batch axis first), from
their shapes and values; `--output NAME=ROLE` overrides the inference for one output.

Two detector layouts are split by rule, one output holding boxes and scores:

- `yolov8`: [N, 4 + C, A] -- rows 0-3 the boxes (cx, cy, w, h), rows 4.. the class scores in [0, 1], A anchors;
- `yolox`: [N, A, 5 + C] -- columns 0-3 the boxes (cx, cy, w, h), column 4 the objectness, 5.. class scores.
  A head exported without its decoding (as YOLOX's own export leaves it) holds grid offsets and log sizes
  over strides 8, 16 and 32 of a square input; its A anchors tell the input's side (A = 21 S^2 / 1024), and
  its boxes are decoded to pixels before they are compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcbench.base.errors import UserError

ROLES = {
    "classes": "class scores or logits along the last axis: judged by argmax agreement per sample",
    "sequence": "per-step class logits [N, T, C] (CTC): judged by the greedy-decoded sequence, and per step",
    "scores": "independent scores in [0, 1]: judged by the decisions above a threshold (F1 to the baseline's)",
    "yolov8": "a YOLOv8 head [N, 4+C, A]: boxes cx,cy,w,h then class scores; judged by detections and their boxes",
    "yolox": "a YOLOX/YOLOv5 head [N, A, 5+C]: boxes, objectness, class scores; judged by detections and boxes",
    "embedding": "a vector per sample: judged by its cosine to the baseline's",
    "real": "real values (a regression, a state, a heatmap): judged by the error relative to each channel's scale",
    "ignore": "not judged",
}
DETECTORS = ("yolov8", "yolox")


class OutputRoleError(UserError):
    """A --output declaration that names no output of the model or no role."""


@dataclass(frozen=True)
class OutputRole:
    """One output's role, why it was chosen, and its batch axis in the model's own layout."""

    name: str
    role: str
    reason: str
    batch_axis: int | None = 0

    def line(self) -> str:
        """`output 'output0' [batch axis 0]: yolov8 (a [N, 22, 2100] head ...)`, for the terminal."""
        return f"output {self.name!r} (batch axis {self.batch_axis}): {self.role} ({self.reason})"


def parse_output_roles(items: list[str] | tuple[str, ...] | dict) -> dict[str, str]:
    """`["output0=yolov8", "stateN=ignore"]` -> {"output0": "yolov8", ...}; OutputRoleError on a bad item."""
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            name, sep, role = str(item).partition("=")
            if not sep or not name.strip():
                raise OutputRoleError(f"--output {item!r}: expected NAME=ROLE, ROLE one of {', '.join(ROLES)}")
            pairs.append((name.strip(), role.strip()))
    for name, role in pairs:
        if role not in ROLES:
            raise OutputRoleError(f"--output {name}={role}: {role!r} is not a role; use one of {', '.join(ROLES)}")
    return dict(pairs)


def check_declared(declared: dict[str, str], names: list[str]) -> None:
    """OutputRoleError where a --output names no output of the model."""
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise OutputRoleError(f"--output {unknown[0]}: the model has no output {unknown[0]!r} "
                              f"(its outputs: {', '.join(names)})")


def onnx_output_names(path) -> list[str]:
    """The outputs an ONNX file declares, read without its weights."""
    import onnx

    return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]


def output_roles(names: list[str], outputs: list[np.ndarray], declared: dict[str, str] | None = None,
                 batch_axes: list[int] | None = None) -> list[OutputRole]:
    """Each output's role: the user's declaration, else inferred from the baseline's outputs (batch first)."""
    declared = dict(declared or {})
    check_declared(declared, names)
    axes = batch_axes or [0] * len(outputs)
    roles = []
    for name, array, axis in zip(names, outputs, axes, strict=True):
        if name in declared:
            roles.append(OutputRole(name, declared[name], "declared with --output", axis))
        else:
            role, reason = inferred_role(np.asarray(array), len(outputs), name)
            roles.append(OutputRole(name, role, reason, axis))
    return roles


HIDDEN = ("hidden", "embed", "feature", "pool", "state")  # names of outputs that hold real values, not classes


def inferred_role(a: np.ndarray, count: int = 1, name: str = "") -> tuple[str, str]:
    """The role an output's values and shape suggest, and the reason in words (batch axis first)."""
    shape = "[N, " + ", ".join(str(d) for d in a.shape[1:]) + "]"
    if any(word in name.lower() for word in HIDDEN):
        kind = "embedding" if a.ndim == 2 else "real"
        return kind, f"{shape}, named {name!r}"
    if a.ndim == 3 and _yolov8(a):
        return "yolov8", f"a {shape} head: 4 box rows of coordinates, then {a.shape[1] - 4} score rows in [0, 1]"
    if a.ndim == 3 and _yolox(a):
        grid = yolox_grid(a.shape[1])
        boxes = "coordinates" if decoded_head(a) or grid is None else \
            f"undecoded grid offsets on a {round(math.sqrt(a.shape[1] * 1024 / 21))}-px YOLOX grid"
        return "yolox", f"a {shape} head: 4 box columns of {boxes}, objectness and {a.shape[2] - 5} score(s)"
    if a.ndim == 3 and a.shape[2] >= 2:
        return "sequence", f"a {shape} sequence of {a.shape[2]} class values per step"
    if a.ndim == 2 and a.shape[1] >= 2 and is_distribution(a):
        return "classes", f"a {shape} distribution over {a.shape[1]} classes"
    if a.ndim == 2 and a.shape[1] >= 2 and _unit_interval(a):
        return "scores", f"{shape} independent scores in [0, 1]"
    if a.ndim == 2 and a.shape[1] == 1 and _unit_interval(a) and a.max() > a.min():
        return "scores", f"a {shape} score in [0, 1]"
    if a.ndim == 2 and a.shape[1] >= 2 and count == 1:
        return "classes", f"the only output, {shape}: logits over {a.shape[1]} classes"
    if a.ndim == 2 and a.shape[1] >= 64:
        return "embedding", f"a {shape} vector per sample"
    return "real", f"{shape} real values"


def is_distribution(a: np.ndarray, axis: int = -1) -> bool:
    """Non-negative and summing to 1 along `axis` (a softmax output), with more than one entry there."""
    a = np.asarray(a, dtype=np.float64)
    return a.ndim >= 2 and a.shape[axis] > 1 and bool(np.all(a >= -1e-6)) and bool(
        np.allclose(a.sum(axis=axis), 1.0, atol=1e-3))


def _unit_interval(a: np.ndarray) -> bool:
    return a.size > 0 and bool(np.all(a >= -1e-6)) and bool(np.all(a <= 1 + 1e-6))


def _coordinates(boxes: np.ndarray) -> bool:
    """Box coordinates in pixels: non-negative widths and heights, with values beyond the unit interval."""
    return boxes.size > 0 and bool(np.all(boxes[..., 2:4] >= -1e-3)) and float(np.abs(boxes).max()) > 1.5


def _yolov8(a: np.ndarray) -> bool:
    """[N, 4 + C, A]: few rows, many anchors, rows 0-3 coordinates and rows 4.. scores in [0, 1]."""
    rows, anchors = a.shape[1], a.shape[2]
    if not 5 <= rows < anchors:
        return False
    return _coordinates(np.moveaxis(a[:, :4], 1, -1)) and _unit_interval(a[:, 4:])


def _yolox(a: np.ndarray) -> bool:
    """[N, A, 5 + C]: many anchors, few columns, columns 0-3 coordinates (or undecoded grid offsets on a
    YOLOX grid) and 4.. objectness and scores."""
    anchors, columns = a.shape[1], a.shape[2]
    if not 6 <= columns < anchors:
        return False
    return (_coordinates(a[..., :4]) or yolox_grid(anchors) is not None) and _unit_interval(a[..., 4:])


YOLOX_STRIDES = (8, 16, 32)


def yolox_grid(anchors: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cell offsets [A, 2] and strides [A, 1] of a YOLOX head over a square input, or None where `anchors`
    is no such grid's count."""
    side = round(math.sqrt(anchors * 1024 / 21))
    if side % 32 or sum((side // s) ** 2 for s in YOLOX_STRIDES) != anchors:
        return None
    cells, strides = [], []
    for stride in YOLOX_STRIDES:
        n = side // stride
        xs, ys = np.meshgrid(np.arange(n), np.arange(n))
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((n * n, 1), stride))
    return np.concatenate(cells).astype(np.float64), np.concatenate(strides).astype(np.float64)


def yolox_decoded(boxes: np.ndarray) -> np.ndarray:
    """Undecoded YOLOX boxes [N, A, 4] (offsets in cells, log sizes) as cx, cy, w, h in pixels."""
    grid = yolox_grid(boxes.shape[1])
    if grid is None:
        return boxes
    cells, strides = grid
    return np.concatenate([(boxes[..., :2] + cells) * strides, np.exp(boxes[..., 2:4]) * strides], axis=-1)


def decoded_head(a: np.ndarray) -> bool:
    """A YOLOX head whose boxes are already pixels (the baseline decides for every variant)."""
    return _coordinates(a[..., :4])


def batch_axis(shapes: list[tuple[int, ...]], rows: list[int], declared: int | None = None) -> int | None:
    """The axis of an output that holds the samples, from its shape on each run and the rows each run fed.

    The axis whose size is the run's row count on every run; where several are, the graph's declared batch
    axis if it is one of them, else the first. None where no axis is (an output that is not per sample).
    """
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        return None
    candidates = [axis for axis in range(ranks.pop()) if all(s[axis] == n for s, n in zip(shapes, rows, strict=True))]
    if not candidates:
        return None
    return declared if declared in candidates else candidates[0]
