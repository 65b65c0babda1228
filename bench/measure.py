"""The in-process measurement of one variant: outputs on the evaluation samples, then latency."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mcbench.bench.accuracy import collected
from mcbench.bench.datasets import Samples
from mcbench.bench.latency import TimingPlan, measure_latency
from mcbench.bench.op_profile import profile_ops
from mcbench.optimizer.artifact import Artifact, InputSpec
from mcbench.optimizer.targets import Target, open_session
from mcbench.reports.schema import LatencyStats


@dataclass
class InProcessResult:
    outputs: np.ndarray
    latency: LatencyStats
    settled: bool
    load_seconds: float
    output_names: list[str]
    op_profile: dict[str, Any] | None = None  # per-operator times of a few inferences (ORT, OpenVINO)
    more_outputs: list[np.ndarray] | None = None  # the second and later outputs, for per-output fidelity
    batch_axes: list[int | None] | None = None  # each output's batch axis in the model's layout (moved first here)


def measure_in_process(
    artifact: dict[str, Any],
    target: dict[str, Any],
    eval_samples: Sequence[dict[str, np.ndarray]],
    timing_feeds: dict[str, np.ndarray],
    plan: TimingPlan,
    batch_size: int = 1,
) -> InProcessResult:
    """Meant to run in a child process (bench.isolate): takes and returns plain data.

    At a batch size above 1, the evaluation samples run in batches of that size (so a variant that
    batches wrongly shows in its accuracy) and latency is per batch of `batch_size` timing inputs.
    After the timing, a few more inferences are profiled per operator (never during it: the
    profilers slow a run down); a profiler failure is recorded in the profile, not raised.
    """
    start = time.perf_counter()
    model, where = Artifact.from_dict(artifact), Target.from_dict(target)
    session = open_session(model, where)
    load_seconds = time.perf_counter() - start
    everything, axes = collected(session, batched(eval_samples, batch_size, model.inputs),
                                 declared_batch_axes(model), model.inputs)
    outputs, *more = everything
    timing = repeated(timing_feeds, batch_size, model.inputs)
    latency, settled = measure_latency(session, timing, plan)
    names = list(session.output_names)
    del session
    op_profile = profile_ops(model, where, timing) if where.runtime != "torch" else None
    return InProcessResult(outputs, latency, settled, load_seconds, names, op_profile, more, axes)


def declared_batch_axes(model: Artifact) -> list[int | None] | None:
    """Per output of an ONNX graph, the axis named like the first input's first dimension (its batch); None for
    another format or a graph that does not name it. Only a tie-breaker: a declared shape may be wrong."""
    if model.format != "onnx":
        return None
    import onnx

    try:
        graph = onnx.load(str(model.path), load_external_data=False).graph
    except Exception:  # the session loaded it; a graph that onnx cannot read only loses the tie-breaker
        return None
    init = {i.name for i in graph.initializer}
    first = next((i for i in graph.input if i.name not in init), None)
    dims = first.type.tensor_type.shape.dim if first is not None else []
    batch = dims[0].dim_param if len(dims) else ""
    if not batch:
        return None
    return [next((k for k, d in enumerate(o.type.tensor_type.shape.dim) if d.dim_param == batch), None)
            for o in graph.output]


def time_in_process(
    artifact: dict[str, Any], target: dict[str, Any], timing_feeds: dict[str, np.ndarray], plan: TimingPlan,
    batch_size: int = 1,
) -> tuple[LatencyStats, bool]:
    """The in-process timing alone, in a child process (bench.isolate): the search's second look at a candidate
    whose outputs and quality were measured already."""
    model = Artifact.from_dict(artifact)
    session = open_session(model, Target.from_dict(target))
    return measure_latency(session, repeated(timing_feeds, batch_size, model.inputs), plan)


def batched(samples: Sequence[dict[str, np.ndarray]], size: int,
            specs: tuple[InputSpec, ...] = ()) -> Sequence[dict[str, np.ndarray]]:
    """Consecutive samples joined along each input's own batch axis, `size` at a time (the last batch may be
    smaller); an input without a batch axis (0-d, `specs` says which) is given once. A dataset's samples are
    re-cut from their arrays, not copied."""
    if size == 1:
        return samples
    if isinstance(samples, Samples):
        return samples.batched(size)
    axes = batch_axes_of(specs)
    groups = [samples[i:i + size] for i in range(0, len(samples), size)]
    return [{name: _joined([s[name] for s in group], axes.get(name, 0)) for name in group[0]} for group in groups]


def repeated(feeds: dict[str, np.ndarray], size: int, specs: tuple[InputSpec, ...] = ()) -> dict[str, np.ndarray]:
    """One timing input repeated `size` times along each input's batch axis (an input without one: once)."""
    if size == 1:
        return feeds
    axes = batch_axes_of(specs)
    return {name: _joined([value] * size, axes.get(name, 0)) for name, value in feeds.items()}


def batch_axes_of(specs: tuple[InputSpec, ...]) -> dict[str, int | None]:
    return {s.name: s.batch_axis for s in specs}


def _joined(values: list[np.ndarray], axis: int | None) -> np.ndarray:
    return values[0] if axis is None or values[0].ndim == 0 else np.concatenate(values, axis=axis)
