"""Accuracy on labelled data and fidelity to the FP32 baseline's outputs."""

from __future__ import annotations

import numpy as np

from optimizer.targets import Session
from reports.schema import Accuracy


def collect_outputs(session: Session, samples: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The first output of the model for each sample, stacked along a new leading axis."""
    return np.stack([np.asarray(session.run(feeds)[0], dtype=np.float64) for feeds in samples])


def accuracy_of(
    outputs: np.ndarray,
    baseline: np.ndarray | None,
    labels: np.ndarray | None,
    dataset: str | None,
) -> Accuracy:
    """Top-1 against labels (when there are labels) and agreement / abs error against the baseline outputs."""
    if labels is not None and len(labels) != len(outputs):
        raise ValueError(f"{len(labels)} labels for {len(outputs)} outputs")
    predictions = _top1(outputs)
    top1 = float(np.mean(predictions == labels)) if labels is not None else None
    agreement = max_abs = mean_abs = None
    if baseline is not None:
        if baseline.shape != outputs.shape:
            raise ValueError(
                f"outputs of shape {outputs.shape} cannot be compared with the baseline's {baseline.shape}"
            )
        agreement = float(np.mean(predictions == _top1(baseline)))
        diff = np.abs(outputs - baseline)
        max_abs, mean_abs = float(diff.max()), float(diff.mean())
    return Accuracy(dataset, len(outputs), top1, agreement, max_abs, mean_abs)


def _top1(outputs: np.ndarray) -> np.ndarray:
    """Arg-max over the last axis after flattening each sample's output to (classes,)."""
    flat = outputs.reshape(len(outputs), -1)
    return flat.argmax(axis=1)
