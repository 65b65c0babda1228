"""A model whose service time is set by construction, to check mcbench's own instruments.

`spinner(service_us=N)` returns a torch module whose forward busy-waits N microseconds on the
monotonic clock, then returns its input: the true service time is known, so what the in-process timer
and the HTTP path under Locust report can be held against it (benchmarks/truth.py, tests/test_truth.py).
A busy-wait, not a sleep: it occupies a core as a model does, and the scheduler cannot stretch it.
"""

from __future__ import annotations

import time
from typing import Any

FACTORY = "mcbench.bench.calibration:spinner"


def spin(service_us: float) -> None:
    end = time.perf_counter_ns() + int(service_us * 1000)
    while time.perf_counter_ns() < end:
        pass


def spinner(service_us: float = 1000.0) -> Any:
    import torch

    class Spinner(torch.nn.Module):
        """forward(x) = x, after `service_us` microseconds of busy work."""

        def __init__(self) -> None:
            super().__init__()
            self.service_us = float(service_us)

        def forward(self, x):
            spin(self.service_us)
            return x

    return Spinner().eval()


def spinner_artifact(service_us: float, folder) -> Any:
    """A torch artifact of the spinner (an empty state_dict; its time is in its factory arguments)."""
    from pathlib import Path

    import torch

    from mcbench.optimizer.artifact import Artifact, InputSpec

    weights = Path(folder) / f"spinner-{int(service_us)}us.pt"
    torch.save({}, weights)
    return Artifact(weights, "torch", (InputSpec("x", (1, 4), "float32"),), factory=FACTORY,
                    factory_args={"service_us": service_us})
