"""The in-process measurement of one variant: outputs on the evaluation samples, then latency."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.accuracy import collect_outputs
from bench.latency import TimingPlan, measure_latency
from optimizer.artifact import Artifact
from optimizer.targets import Target, open_session
from reports.schema import LatencyStats


@dataclass
class InProcessResult:
    outputs: np.ndarray
    latency: LatencyStats
    settled: bool
    load_seconds: float
    output_names: list[str]


def measure_in_process(
    artifact: dict[str, Any],
    target: dict[str, Any],
    eval_samples: list[dict[str, np.ndarray]],
    timing_feeds: dict[str, np.ndarray],
    plan: TimingPlan,
) -> InProcessResult:
    """Meant to run in a child process (bench.isolate): takes and returns plain data."""
    start = time.perf_counter()
    session = open_session(Artifact.from_dict(artifact), Target.from_dict(target))
    load_seconds = time.perf_counter() - start
    outputs = collect_outputs(session, eval_samples)
    latency, settled = measure_latency(session, timing_feeds, plan)
    return InProcessResult(outputs, latency, settled, load_seconds, list(session.output_names))
