"""Accuracy on labelled data and fidelity to the FP32 baseline's outputs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcbench.bench.metrics import fidelity, task_metrics
from mcbench.optimizer.targets import Session
from mcbench.reports.schema import Accuracy

UserMetric = Callable[[np.ndarray, np.ndarray | None], "float | dict[str, float]"]


def collect_outputs(session: Session, samples: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The model's first output for each sample, concatenated along the batch axis: one row per sample."""
    return collect_all_outputs(session, samples)[0]


def collect_all_outputs(session: Session, samples: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Every output of the model, each concatenated along the batch axis over the samples."""
    runs = [[np.asarray(o, dtype=np.float64) for o in session.run(feeds)] for feeds in samples]
    return [np.concatenate([r[i] if r[i].ndim else r[i][None] for r in runs]) for i in range(len(runs[0]))]


def accuracy_of(
    outputs: np.ndarray,
    baseline: np.ndarray | None,
    labels: np.ndarray | None,
    dataset: str | None,
    task: str = "classification",
    user_metric: UserMetric | None = None,
    more: list[np.ndarray] | None = None,
    baseline_more: list[np.ndarray] | None = None,
) -> Accuracy:
    """The task's metrics against labels, a user metric, and fidelity (agreement, abs error) to the baseline.

    `more` and `baseline_more` are the second and later outputs: the fidelity task compares each of them.
    """
    if labels is not None and len(labels) != len(outputs):
        raise ValueError(f"{len(labels)} labels for {len(outputs)} outputs")
    metrics = task_metrics(task, outputs, labels, baseline)
    if task == "fidelity" and baseline is not None:
        extra = list(zip(more or [], baseline_more or [], strict=False))
        metrics.update(fidelity([outputs, *(o for o, _ in extra)], [baseline, *(b for _, b in extra)]))
    if user_metric is not None:
        value = user_metric(outputs, labels)
        metrics.update(value if isinstance(value, dict) else {"user_metric": float(value)})
    agreement = max_abs = mean_abs = None
    if baseline is not None:
        if baseline.shape != outputs.shape:
            raise ValueError(
                f"outputs of shape {outputs.shape} cannot be compared with the baseline's {baseline.shape}"
            )
        if task == "classification":
            agreement = float(np.mean(_top1(outputs) == _top1(baseline)))
        diff = np.abs(outputs - baseline)
        max_abs, mean_abs = float(diff.max()), float(diff.mean())
    per_class = per_class_top1(outputs, labels) if task == "classification" and labels is not None else {}
    return Accuracy(dataset, len(outputs), metrics.get("top1"), agreement, max_abs, mean_abs,
                    task=task, metrics=metrics, per_class=per_class)


def per_class_top1(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 on each class's samples, keyed by the label as text: quantization may hurt one class only."""
    predicted, truth = _top1(outputs), np.asarray(labels).reshape(-1)
    return {str(label.item()): float(np.mean(predicted[truth == label] == label)) for label in np.unique(truth)}


def _top1(outputs: np.ndarray) -> np.ndarray:
    """Arg-max of each row after flattening it to (classes,)."""
    return outputs.reshape(len(outputs), -1).argmax(axis=1)
