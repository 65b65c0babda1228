"""Accuracy on labelled data and fidelity to the FP32 baseline's outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mcbench.bench.metrics import fidelity, role_figures, task_metrics
from mcbench.bench.roles import OutputRole, batch_axis
from mcbench.optimizer.artifact import InputSpec
from mcbench.optimizer.targets import Session
from mcbench.reports.schema import Accuracy, OutputRoleRecord

UserMetric = Callable[[np.ndarray, np.ndarray | None], "float | dict[str, float]"]


def collect_outputs(session: Session, samples: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
    """The model's first output for each sample, concatenated along the batch axis: one row per sample."""
    return collect_all_outputs(session, samples)[0]


def collect_all_outputs(session: Session, samples: Sequence[dict[str, np.ndarray]],
                        declared: list[int | None] | None = None,
                        specs: tuple[InputSpec, ...] = ()) -> list[np.ndarray]:
    """Every output of the model, each concatenated along its batch axis over the samples, that axis first."""
    return collected(session, samples, declared, specs)[0]


def collected(session: Session, samples: Sequence[dict[str, np.ndarray]],
              declared: list[int | None] | None = None,
              specs: tuple[InputSpec, ...] = ()) -> tuple[list[np.ndarray], list[int | None]]:
    """Every output batch first (one row per sample fed), and each output's batch axis in the model's layout.

    The batch axis is found on the shapes the runs gave (bench.roles.batch_axis), the graph's `declared` axis
    breaking a tie; an output with none gets a new axis, one row per run. Each run's rows are copied into one
    array per output as they come (_Joined), so the outputs take about their own size: a list of one array a run
    cost about 300 bytes an inference on top, and joining it held everything twice (issue 32).
    """
    joined: list[_Joined] = []
    rows = np.zeros(len(samples), dtype=np.int64)  # the rows each run fed
    for run, feeds in enumerate(samples):
        outs = [np.asarray(o) for o in session.run(feeds)]  # made float64 as they are copied in
        rows[run] = _rows_fed(feeds, specs)
        if not joined:
            joined = [_Joined(o, int(rows[0]), len(samples), _declared(declared, i)) for i, o in enumerate(outs)]
        for part, out in zip(joined, outs, strict=True):
            part.add(out, rows, run)
    if not joined:
        raise ValueError("no samples to run")
    return [j.result(i, rows.tolist()) for i, j in enumerate(joined)], [j.axis(rows.tolist()) for j in joined]


def _declared(declared: list[int | None] | None, i: int) -> int | None:
    return declared[i] if declared and i < len(declared) else None


class _Joined:
    """One output over the runs, its rows copied into one array as they come, along the batch axis the first run
    shows (moved first).

    That axis is the one bench.roles.batch_axis picks over all the runs whenever every run has it (the candidates
    only shrink, and the pick is the declared axis or the first candidate), so the array is the join. Room is made
    for the first run's rows times the runs (a batched dataset's last run is the only smaller one); a run that does
    not fit (another rank, axis or shape, or more rows) turns the array back into the runs as given, joined at the
    end as batch_axis says, so the result is the same either way.
    """

    def __init__(self, first: np.ndarray, rows: int, runs: int, declared: int | None):
        self.declared, self.rank = declared, first.ndim
        self.guess = batch_axis([first.shape], [rows], declared)
        shape = first.shape if self.guess is None else first.shape[:self.guess] + first.shape[self.guess + 1:]
        self.array: np.ndarray | None = np.empty((runs * (1 if self.guess is None else rows), *shape))
        self.filled = 0
        self.runs: list[np.ndarray] = []  # every run as given, once one did not fit the array

    def add(self, out: np.ndarray, rows: np.ndarray, run: int) -> None:
        """`rows[:run + 1]`: the rows each run so far fed, this one (number `run`) last."""
        if self.array is not None:
            if out.ndim == self.rank:
                part = out if self.guess == 0 else out[None] if self.guess is None else np.moveaxis(out, self.guess, 0)
                if self._fits(part, int(rows[run])):
                    self.array[self.filled:self.filled + len(part)] = part
                    self.filled += len(part)
                    return
            self.runs = self._given_runs(rows[:run])
        self.runs.append(np.asarray(out, dtype=np.float64))

    def _fits(self, part: np.ndarray, rows: int) -> bool:
        assert self.array is not None
        return (part.shape[1:] == self.array.shape[1:] and self.filled + len(part) <= len(self.array)
                and (self.guess is None or len(part) == rows))

    def _given_runs(self, rows: np.ndarray) -> list[np.ndarray]:
        """The runs copied so far (they fed `rows`), each in the model's layout again (views of the array)."""
        assert self.array is not None
        done, self.array = self.array[:self.filled], None
        if self.guess is None:
            return list(done)
        return [np.moveaxis(p, 0, self.guess) for p in np.split(done, np.cumsum(rows)[:-1])]

    def axis(self, rows: list[int]) -> int | None:
        if self.array is not None:
            return self.guess
        return batch_axis([r.shape for r in self.runs], rows, self.declared)

    def result(self, index: int, rows: list[int]) -> np.ndarray:
        if self.array is not None:
            if self.filled < len(self.array):  # a smaller last batch: shrunk in place, never copied
                self.array.resize((self.filled, *self.array.shape[1:]), refcheck=False)
            return self.array
        axis = self.axis(rows)
        parts = [r[None] if axis is None else np.moveaxis(r, axis, 0) for r in self.runs]
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) > 1:
            raise ValueError(f"output {index} has a different shape per sample ({sorted(shapes)[:2]}): make the "
                             "inputs one shape (--input) so the outputs can be compared")
        return np.concatenate(parts)


def _rows_fed(feeds: dict[str, np.ndarray], specs: tuple[InputSpec, ...] = ()) -> int:
    """How many samples one inference holds: the size of the first batched input's batch axis (its spec's
    `batch_axis`; without specs, the first input's first dimension); 1 where no input has a batch axis."""
    for spec in specs:
        if spec.batch_axis is not None and spec.name in feeds:
            return int(np.shape(feeds[spec.name])[spec.batch_axis])
    if specs:
        return 1
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and np.ndim(first) else 1


def accuracy_of(
    outputs: np.ndarray,
    baseline: np.ndarray | None,
    labels: np.ndarray | None,
    dataset: str | None,
    task: str = "classification",
    user_metric: UserMetric | None = None,
    more: list[np.ndarray] | None = None,
    baseline_more: list[np.ndarray] | None = None,
    roles: list[OutputRole] | None = None,
) -> Accuracy:
    """The task's metrics against labels, a user metric, and fidelity (agreement, abs error) to the baseline.

    `more` and `baseline_more` are the second and later outputs: the fidelity task compares each of them.
    `roles` (one per output) adds each output's figures for its role and the worst of them (`worst_role`).
    """
    if labels is not None and len(labels) != len(outputs):
        raise ValueError(f"{len(labels)} labels for {len(outputs)} outputs")
    metrics = task_metrics(task, outputs, labels, baseline)
    if task == "fidelity" and baseline is not None:
        extra = list(zip(more or [], baseline_more or [], strict=False))
        metrics.update(fidelity([outputs, *(o for o, _ in extra)], [baseline, *(b for _, b in extra)]))
    if roles and baseline is not None and len(roles) == 1 + len(more or []) == 1 + len(baseline_more or []):
        metrics.update(role_figures(roles, [outputs, *(more or [])], [baseline, *(baseline_more or [])]))
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
        max_abs, mean_abs = _abs_error(outputs, baseline)
    per_class = per_class_top1(outputs, labels) if task == "classification" and labels is not None else {}
    return Accuracy(dataset, len(outputs), metrics.get("top1"), agreement, max_abs, mean_abs,
                    task=task, metrics=metrics, per_class=per_class, roles=roles_record(roles))


def _abs_error(outputs: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """The largest and the mean absolute difference; one temporary the outputs' size (float64), freed on return."""
    diff = np.subtract(outputs, baseline, dtype=np.float64)
    np.abs(diff, out=diff)
    return float(diff.max()), float(diff.mean())


def roles_record(roles: list[OutputRole] | None) -> dict[str, OutputRoleRecord]:
    """What results.json keeps of the roles: per output name, its role, why, and its batch axis."""
    return {r.name: OutputRoleRecord(r.role, r.reason, r.batch_axis) for r in roles or []}


def per_class_top1(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 on each class's samples, keyed by the label as text: quantization may hurt one class only."""
    predicted, truth = _top1(outputs), np.asarray(labels).reshape(-1)
    return {str(label.item()): float(np.mean(predicted[truth == label] == label)) for label in np.unique(truth)}


def _top1(outputs: np.ndarray) -> np.ndarray:
    """Arg-max of each row after flattening it to (classes,)."""
    return outputs.reshape(len(outputs), -1).argmax(axis=1)
