"""Task metrics on model outputs: classification, regression, embeddings, fidelity, or a user's function.

Outputs arrive concatenated along their batch axis, moved first: one row per sample; labels have one entry per
row. `fidelity` is for any other output (a sequence of per-step distributions, a heatmap, several outputs):
per output, the relative max and mean error to the baseline, and the argmax agreement along the last
axis where the baseline's outputs are distributions (non-negative, summing to 1 along that axis).
`role_figures` judges each output by its role (bench.roles) with the figure a user decides on; the worst of
them, `worst_role`, is the fidelity task's primary figure (reports.quality).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from mcbench.bench.roles import DETECTORS, OutputRole, decoded_head, is_distribution, yolox_decoded

TASKS = ("classification", "regression", "embedding", "fidelity")
AUTO = "auto"  # classification for one [batch, classes] output, else fidelity: decided on the baseline's outputs

MetricFn = Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], dict[str, float]]


def _rows(outputs: np.ndarray) -> np.ndarray:
    return outputs.reshape(len(outputs), -1).astype(np.float64)


def classification(outputs: np.ndarray, labels: np.ndarray | None, baseline: np.ndarray | None) -> dict[str, float]:
    """top-1 and top-5 accuracy (top-5 only with more than five classes)."""
    if labels is None:
        return {}
    scores = outputs.reshape(len(outputs), -1)  # a view: top-1 is an arg-max, no copy (issue 32)
    labels = labels.reshape(-1).astype(np.int64, copy=False)
    metrics = {"top1": float(np.mean(scores.argmax(axis=1) == labels))}
    if scores.shape[1] > 5:
        ranked = np.argsort(-_rows(outputs), axis=1)
        metrics["top5"] = float(np.mean((ranked[:, :5] == labels[:, None]).any(axis=1)))
    return metrics


def regression(outputs: np.ndarray, labels: np.ndarray | None, baseline: np.ndarray | None) -> dict[str, float]:
    """Mean absolute and root mean squared error against the labels, and the relative error (mean absolute
    error over the mean absolute target) to the labels, or to the baseline where there are none."""
    if labels is None:
        return {} if baseline is None else {"rel_error": _relative(_rows(outputs) - _rows(baseline), _rows(baseline))}
    target = labels.reshape(len(labels), -1).astype(np.float64)
    error = _rows(outputs) - target
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2))),
            "rel_error": _relative(error, target)}


def _relative(error: np.ndarray, reference: np.ndarray) -> float:
    scale = float(np.mean(np.abs(reference)))
    return float(np.mean(np.abs(error))) / scale if scale > 0 else float(np.mean(np.abs(error)))


def output_fidelity(output: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """One output against the baseline's: relative max and mean error, and argmax agreement where it applies."""
    o, b = np.asarray(output, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if o.shape != b.shape:
        raise ValueError(f"an output of shape {list(o.shape)} cannot be compared with the baseline's {list(b.shape)}")
    diff = np.abs(o - b)
    peak = float(np.abs(b).max()) if b.size else 0.0
    metrics = {"rel_max_err": float(diff.max()) / peak if peak > 0 else float(diff.max()),
               "rel_mean_err": _relative(o - b, b)}
    if is_distribution(b):
        metrics["argmax_agreement"] = float(np.mean(o.argmax(axis=-1) == b.argmax(axis=-1)))
    return metrics


def fidelity(outputs: list[np.ndarray], baselines: list[np.ndarray]) -> dict[str, float]:
    """Per output (`out0.rel_mean_err`, ...) and the worst over outputs (`rel_mean_err`, `argmax_agreement`)."""
    per = [output_fidelity(o, b) for o, b in zip(outputs, baselines, strict=True)]
    metrics: dict[str, float] = {}
    for i, m in enumerate(per):
        metrics.update({f"out{i}.{k}": v for k, v in m.items()})
    metrics["rel_max_err"] = max(m["rel_max_err"] for m in per)
    metrics["rel_mean_err"] = max(m["rel_mean_err"] for m in per)
    agreements = [m["argmax_agreement"] for m in per if "argmax_agreement" in m]
    if agreements:
        metrics["argmax_agreement"] = min(agreements)
    return metrics


def resolved_task(task: str, outputs: list[np.ndarray]) -> str:
    """`auto`: classification for a single [batch, classes] output, fidelity for anything else."""
    if task != AUTO:
        return task
    single = len(outputs) == 1 and outputs[0].ndim == 2 and outputs[0].shape[1] >= 2
    return "classification" if single else "fidelity"


def embedding(outputs: np.ndarray, labels: np.ndarray | None, baseline: np.ndarray | None) -> dict[str, float]:
    """Mean and minimum cosine similarity of each output vector to the FP32 baseline's."""
    if baseline is None:
        return {}
    a, b = _rows(outputs), _rows(baseline)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.sum(a * b, axis=1) / np.where(norms == 0, 1.0, norms)
    return {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}


# What each task records in `accuracy` (reports/quality.py reads them); the first ones need labels.
RECORDED = {"classification": ("top1", "top5", "agreement"), "regression": ("mae", "rmse", "rel_error"),
            "embedding": ("cosine_mean", "cosine_min"),
            "fidelity": ("rel_max_err", "rel_mean_err", "argmax_agreement")}
NEEDS_LABELS = {"top1", "top5", "mae", "rmse"}
_PER_OUTPUT = re.compile(r"out[0-9]+\.(rel_max_err|rel_mean_err|argmax_agreement)")


def records(task: str, metric: str, labelled: bool) -> bool:
    """Whether a run of `task` (`auto`: classification or fidelity) can record `metric` in its accuracy."""
    tasks = ("classification", "fidelity") if task == AUTO else (task,)
    if "fidelity" in tasks and _PER_OUTPUT.fullmatch(metric):
        return True
    return any(metric in RECORDED.get(t, ()) for t in tasks) and (labelled or metric not in NEEDS_LABELS)


BUILTIN: dict[str, MetricFn] = {"classification": classification, "regression": regression, "embedding": embedding,
                                 "fidelity": lambda outputs, labels, baseline: {}}  # per output: see fidelity()


def task_metrics(
    task: str, outputs: np.ndarray, labels: np.ndarray | None, baseline: np.ndarray | None
) -> dict[str, float]:
    if task not in BUILTIN:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
    return BUILTIN[task](outputs, labels, baseline)


# --- figures per role: each in [0, 1], 1 where the variant decides as the baseline does ---------------------------

BLANK = 0  # the CTC blank class: index 0, as CTC training (PyTorch's CTCLoss, PaddleOCR, ddddocr) sets it
SCORE_THRESHOLD = 0.5  # a score's decision; lowered to half the baseline's highest score where none reaches it
DETECTION_THRESHOLD = 0.25  # a detection's score (YOLOv8's and YOLOX's default confidence); lowered likewise
SCORE_MARGIN = 0.8  # a decision is kept where the other side's score reaches 0.8 of the threshold
MATCH_IOU = 0.5  # a detection is found where one of the same class overlaps it this much
BOX_KEPT_IOU = 0.9  # a box is kept where the variant's, for the same anchor, overlaps the baseline's this much
GOVERNING = {"classes": "argmax_agreement", "sequence": "sequence_agreement", "scores": "score_f1",
             "detections": "det_f1", "boxes": "box_kept", "embedding": "cosine_mean", "real": "real_kept"}


def role_figures(roles: list[OutputRole], outputs: list[np.ndarray], baselines: list[np.ndarray]) -> dict[str, float]:
    """Per output, `NAME.FIGURE` for its role's figures; `worst_role`, the lowest governing figure; and
    `argmax_agreement`, the lowest argmax agreement (per sample or per step) over class and sequence outputs,
    logits included, so a budget can name it.

    A detector head gives two governing figures, its detections' F1 and its boxes kept; an output whose
    baseline decides nothing (no score above any threshold) gives none.
    """
    metrics: dict[str, float] = {}
    governing, argmax = [], []
    for role, out, base in zip(roles, outputs, baselines, strict=True):
        figures = figures_of(role.role, np.asarray(out, np.float64), np.asarray(base, np.float64))
        metrics.update({f"{role.name}.{key}": value for key, value in figures.items()})
        governing += [figures[key] for key in GOVERNING.values() if key in figures]
        argmax += [figures[key] for key in ("argmax_agreement", "step_agreement") if key in figures]
    if governing:
        metrics["worst_role"] = min(governing)
    if argmax:
        metrics["argmax_agreement"] = min(argmax)
    return metrics


def figures_of(role: str, out: np.ndarray, base: np.ndarray) -> dict[str, float]:
    if out.shape != base.shape:
        raise ValueError(f"an output of shape {list(out.shape)} cannot be compared with the baseline's "
                         f"{list(base.shape)}")
    if role == "classes":
        return {"argmax_agreement": float(np.mean(out.argmax(axis=-1) == base.argmax(axis=-1)))}
    if role == "sequence":
        return sequence_figures(out, base)
    if role == "scores":
        return score_figures(out, base)
    if role in DETECTORS:
        decode = role == "yolox" and not decoded_head(base)
        return detection_figures(*detector_parts(role, out, decode), *detector_parts(role, base, decode))
    if role == "embedding":
        cosine = np.clip(_cosines(out, base), 0.0, 1.0)
        return {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}
    if role == "real":
        return real_figures(out, base)
    return {}


def ctc_decode(steps: np.ndarray, blank: int = BLANK) -> tuple[int, ...]:
    """Greedy CTC decoding of one sample's [T, C] scores: argmax per step, repeats collapsed, blanks dropped."""
    best = steps.argmax(axis=-1)
    kept = best[np.r_[True, best[1:] != best[:-1]]]
    return tuple(int(c) for c in kept if c != blank)


def ctc_blank(base: np.ndarray) -> int:
    """The blank class: 0 (PyTorch's CTCLoss, PaddleOCR, ddddocr), or the last class where it wins more of the
    baseline's steps than class 0 does (TensorFlow's ctc_loss puts it last)."""
    best = base.argmax(axis=-1)
    last = base.shape[-1] - 1
    return last if np.sum(best == last) > np.sum(best == BLANK) else BLANK


def sequence_figures(out: np.ndarray, base: np.ndarray) -> dict[str, float]:
    """[N, T, C]: the share of steps with the baseline's argmax, and of samples that decode to its sequence."""
    blank = ctc_blank(base)
    same = [ctc_decode(o, blank) == ctc_decode(b, blank) for o, b in zip(out, base, strict=True)]
    return {"step_agreement": float(np.mean(out.argmax(axis=-1) == base.argmax(axis=-1))),
            "sequence_agreement": float(np.mean(same)), "ctc_blank": float(blank)}


def threshold_of(base_scores: np.ndarray, default: float) -> float | None:
    """The decision threshold: the default, or half the baseline's highest score where none reaches it."""
    top = float(base_scores.max()) if base_scores.size else 0.0
    if top <= 0:
        return None
    return default if top >= default else top / 2


def _f1(recall: float, precision: float) -> float:
    return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


def score_figures(out: np.ndarray, base: np.ndarray) -> dict[str, float]:
    """Independent scores: the baseline's decisions (score >= threshold) the variant keeps, and the reverse."""
    threshold = threshold_of(base, SCORE_THRESHOLD)
    if threshold is None:
        return {}
    kept_of_base = out[base >= threshold] >= SCORE_MARGIN * threshold
    ours = out >= threshold
    recall = float(kept_of_base.mean())
    precision = float((base[ours] >= SCORE_MARGIN * threshold).mean()) if ours.any() else 0.0
    return {"score_recall": recall, "score_precision": precision, "score_f1": _f1(recall, precision),
            "score_threshold": threshold}


def detector_parts(role: str, a: np.ndarray, decode: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A detector head split by its layout: boxes [N, A, 4] as x1, y1, x2, y2 and class scores [N, A, C];
    `decode`: a YOLOX head's boxes are grid offsets and log sizes (bench.roles.yolox_decoded)."""
    if role == "yolov8":
        boxes, scores = np.moveaxis(a[:, :4], 1, -1), np.moveaxis(a[:, 4:], 1, -1)
    else:
        boxes, scores = a[..., :4], a[..., 4:5] * a[..., 5:] if a.shape[-1] > 5 else a[..., 4:5]
        boxes = yolox_decoded(boxes) if decode else boxes
    cx, cy, w, h = np.moveaxis(boxes, -1, 0)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1), scores


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes [P, 4] and [Q, 4] (x1, y1, x2, y2): [P, Q]."""
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _found(boxes: np.ndarray, scores: np.ndarray, threshold: float, other_boxes: np.ndarray,
           other_scores: np.ndarray, other_threshold: float) -> tuple[int, int]:
    """Of one sample's detections (score >= threshold, per class), how many the other side also makes (a
    detection of the same class at IoU >= 0.5, scored >= other_threshold), and how many there are."""
    found = total = 0
    for c in range(scores.shape[-1]):
        mine, theirs = scores[:, c] >= threshold, other_scores[:, c] >= other_threshold
        total += int(mine.sum())
        if mine.any() and theirs.any():
            found += int((iou(boxes[mine], other_boxes[theirs]).max(axis=1) >= MATCH_IOU).sum())
    return found, total


def detection_figures(boxes: np.ndarray, scores: np.ndarray, base_boxes: np.ndarray,
                      base_scores: np.ndarray) -> dict[str, float]:
    """The baseline's detections the variant finds (recall), the variant's the baseline makes (precision), their
    F1, and the IoU of each baseline detection's box with the variant's box for the same anchor: its mean, its
    minimum, and the share of boxes kept (IoU >= 0.9, about 2.5% of the box's size on each side); `box_err`
    is the largest coordinate's shift over the box's size (the square root of its area), on average."""
    threshold = threshold_of(base_scores, DETECTION_THRESHOLD)
    if threshold is None:
        return {}
    low = SCORE_MARGIN * threshold
    recalled = [_found(base_boxes[i], base_scores[i], threshold, boxes[i], scores[i], low) for i in range(len(boxes))]
    precise = [_found(boxes[i], scores[i], threshold, base_boxes[i], base_scores[i], low) for i in range(len(boxes))]
    recall = sum(f for f, _ in recalled) / max(1, sum(t for _, t in recalled))
    precision = sum(f for f, _ in precise) / sum(t for _, t in precise) if sum(t for _, t in precise) else 0.0
    anchors = base_scores.max(axis=-1) >= threshold  # [N, A]: where the baseline detects something
    overlap = np.array([iou(o[None], b[None])[0, 0] for o, b in zip(boxes[anchors], base_boxes[anchors],
                                                                     strict=True)])
    size = np.sqrt(np.prod(np.clip(base_boxes[anchors][:, 2:] - base_boxes[anchors][:, :2], 1e-9, None), axis=-1))
    shift = np.abs(boxes[anchors] - base_boxes[anchors]).max(axis=-1) / size
    return {"det_recall": recall, "det_precision": precision, "det_f1": _f1(recall, precision),
            "det_threshold": threshold, "detections": float(sum(t for _, t in recalled)),
            "box_kept": float(np.mean(overlap >= BOX_KEPT_IOU)), "box_iou": float(overlap.mean()),
            "box_iou_min": float(overlap.min()),
            "box_err": float(shift.mean())}


def real_figures(out: np.ndarray, base: np.ndarray) -> dict[str, float]:
    """Real values: the mean error at each position relative to that position's scale over the samples (its
    root mean square), each capped at 1 (a position off by its whole scale is lost, no more), averaged over the
    positions; `real_kept` is one minus it. A position the baseline holds at 0 is measured against a millionth
    of the whole output's scale, so rounding there does not count, a real change does."""
    o, b = _rows(out), _rows(base)
    scale = np.sqrt(np.mean(b**2, axis=0))
    floor = 1e-6 * float(np.sqrt(np.mean(b**2))) or 1e-12
    error = float(np.mean(np.minimum(np.mean(np.abs(o - b), axis=0) / np.maximum(scale, floor), 1.0)))
    return {"channel_rel_err": error, "real_kept": 1.0 - error}


def _cosines(out: np.ndarray, base: np.ndarray) -> np.ndarray:
    a, b = _rows(out), _rows(base)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.where(norms == 0, 1.0, norms)
