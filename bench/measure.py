"""The in-process measurement of one variant: outputs on the evaluation samples, then latency."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.accuracy import collect_outputs
from bench.latency import TimingPlan, measure_latency
from bench.op_profile import profile_ops
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
    op_profile: dict[str, Any] | None = None  # per-operator times of a few inferences (ORT, OpenVINO)


def measure_in_process(
    artifact: dict[str, Any],
    target: dict[str, Any],
    eval_samples: list[dict[str, np.ndarray]],
    timing_feeds: dict[str, np.ndarray],
    plan: TimingPlan,
) -> InProcessResult:
    """Meant to run in a child process (bench.isolate): takes and returns plain data.

    After the timing, a few more inferences are profiled per operator (never during it: the
    profilers slow a run down); a profiler failure is recorded in the profile, not raised.
    """
    start = time.perf_counter()
    model, where = Artifact.from_dict(artifact), Target.from_dict(target)
    session = open_session(model, where)
    load_seconds = time.perf_counter() - start
    outputs = collect_outputs(session, eval_samples)
    session_names = list(session.output_names)
    latency, settled = measure_latency(session, timing_feeds, plan)
    del session
    op_profile = profile_ops(model, where, timing_feeds) if where.runtime != "torch" else None
    return InProcessResult(outputs, latency, settled, load_seconds, session_names, op_profile)
