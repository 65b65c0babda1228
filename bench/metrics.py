"""Task metrics on model outputs: classification, regression, embeddings, fidelity, or a user's function.

Outputs arrive concatenated along the batch axis, one row per sample; labels have one entry per row.
`fidelity` is for any other output (a sequence of per-step distributions, a heatmap, several outputs):
per output, the relative max and mean error to the baseline, and the argmax agreement along the last
axis where the baseline's outputs are distributions (non-negative, summing to 1 along that axis).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

TASKS = ("classification", "regression", "embedding", "fidelity")
AUTO = "auto"  # classification for one [batch, classes] output, else fidelity: decided on the baseline's outputs

MetricFn = Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], dict[str, float]]


def _rows(outputs: np.ndarray) -> np.ndarray:
    return outputs.reshape(len(outputs), -1).astype(np.float64)


def classification(outputs: np.ndarray, labels: np.ndarray | None, baseline: np.ndarray | None) -> dict[str, float]:
    """top-1 and top-5 accuracy (top-5 only with more than five classes)."""
    if labels is None:
        return {}
    scores = _rows(outputs)
    labels = labels.reshape(-1).astype(np.int64)
    ranked = np.argsort(-scores, axis=1)
    metrics = {"top1": float(np.mean(ranked[:, 0] == labels))}
    if scores.shape[1] > 5:
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


def is_distribution(array: np.ndarray) -> bool:
    """Non-negative and summing to 1 along the last axis (a softmax output), with more than one entry there."""
    a = np.asarray(array, dtype=np.float64)
    return a.ndim >= 2 and a.shape[-1] > 1 and bool(np.all(a >= -1e-6)) and bool(
        np.allclose(a.sum(axis=-1), 1.0, atol=1e-3))


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
