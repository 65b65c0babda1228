"""Task metrics on model outputs: classification, regression, embeddings, or a user's function.

Outputs arrive concatenated along the batch axis, one row per sample; labels have one entry per row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TASKS = ("classification", "regression", "embedding")

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
    """Mean absolute error and root mean squared error against the labels."""
    if labels is None:
        return {}
    error = _rows(outputs) - labels.reshape(len(labels), -1).astype(np.float64)
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2)))}


def embedding(outputs: np.ndarray, labels: np.ndarray | None, baseline: np.ndarray | None) -> dict[str, float]:
    """Mean and minimum cosine similarity of each output vector to the FP32 baseline's."""
    if baseline is None:
        return {}
    a, b = _rows(outputs), _rows(baseline)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.sum(a * b, axis=1) / np.where(norms == 0, 1.0, norms)
    return {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}


BUILTIN: dict[str, MetricFn] = {"classification": classification, "regression": regression, "embedding": embedding}


def task_metrics(
    task: str, outputs: np.ndarray, labels: np.ndarray | None, baseline: np.ndarray | None
) -> dict[str, float]:
    if task not in BUILTIN:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
    return BUILTIN[task](outputs, labels, baseline)
