"""A user metric for tests/test_roles_real.py: it records the layout it is given, batch first."""

import numpy as np


def rows(outputs: np.ndarray, labels: np.ndarray | None) -> dict[str, float]:
    """How many rows the metric got, and the share of samples whose first step's argmax is the label."""
    first_step = outputs[:, 0].argmax(axis=-1)
    return {"metric_rows": float(len(outputs)), "metric_steps": float(outputs.shape[1]),
            "first_step_is_label": float(np.mean(first_step == labels))}
