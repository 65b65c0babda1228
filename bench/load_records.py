"""The per-request records of a load step: their columns, the files the locustfile writes them to, the check of
an answer against the offline outputs, and the step's figures computed from the records.

Numpy and the results schema only (no Locust, no gevent): bench.load reads the records, bench/locustfile.py
writes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcbench.bench.load_plan import LoadPlan
from mcbench.bench.protocol import decode_infer_response
from mcbench.reports.schema import LatencyStats, LoadStep

SATURATED_CPU_PERCENT = 90.0
MIN_WINDOW_ANSWERS = 100  # fewer answers than this in a window give no p99 worth comparing
RTOL, ATOL = 1e-3, 1e-4  # a served answer matches the offline one within these (same runtime, same settings)
# one row a request: start (s since the process began the test; for the open loop the *scheduled* start), latency
# (s, from that start), HTTP status (0: none), error code (a 200 whose binary data does not add up has one), check
# (0 none, 1 match, 2 mismatch), the server's own model and handler times by its Server-Timing header (ms; NaN where
# it sent none), in the open loop how late the generator began the request after its scheduled start (s; NaN in the
# closed loop), the server's encoding time (ms, Server-Timing; NaN where none), and whether the answer came as
# binary data (1) or JSON (0; NaN: no answer)
COLUMNS = 10
TIMED_COLUMNS = ("model_ms", "app_ms", "lag_s", "encode_ms", "binary")  # Records' columns a row may lack (NaN)


def save_records(path: Path, rows: np.ndarray, usage, kinds: list[str], worker: str | None = None) -> None:
    """One process's (or, from the master, one worker's) rows, its wall and CPU seconds and its error kinds."""
    tmp = path.with_suffix(".part.npz")
    extra = {"worker": np.array(worker, dtype=str)} if worker is not None else {}
    np.savez(tmp, records=rows, usage=np.array(usage, dtype=np.float64), error_kinds=np.array(kinds, dtype=str),
             **extra)
    tmp.replace(path)


def read_expected(path: str) -> list[list[np.ndarray]]:
    """The offline outputs bench.load.Requests wrote (".npz", "i/k": request i, output k), flat, a list a request."""
    with np.load(path) as data:
        keys = sorted(data.files, key=lambda k: tuple(map(int, k.split("/"))))
        out: dict[int, list[np.ndarray]] = {}
        for key in keys:
            out.setdefault(int(key.split("/")[0]), []).append(data[key].reshape(-1))
    return [out[i] for i in sorted(out)]


def check_answer(content: bytes | None, header_length: str | None, want: list[np.ndarray]) -> int:
    """1 when the answer's outputs (JSON or binary data) match the offline outputs `want`, else 2 (the check
    column). The offline record may hold only the first outputs: those present are compared."""
    try:
        outputs = decode_infer_response(content or b"", header_length)
        got = [np.asarray(o, dtype=np.float64).reshape(-1) for o in outputs.values()]
    except (ValueError, KeyError, TypeError):
        return 2
    same = len(got) >= len(want) and all(g.shape == w.shape and np.allclose(g, w, rtol=RTOL, atol=ATOL)
                                         for g, w in zip(got, want, strict=False))
    return 1 if same else 2


@dataclass
class Records:
    """Per-request rows from every Locust process of one step: start (s), latency (s), status, error, check, the
    server's model and handler times by its Server-Timing header (ms), in the open loop how late the generator
    began the request (s), the server's encoding time (ms), and whether the answer was binary data (1) or JSON (0);
    NaN where a row has none of the last five."""

    start_s: np.ndarray
    latency_s: np.ndarray
    status: np.ndarray
    error: np.ndarray  # index into error_kinds, 0 for none
    check: np.ndarray  # 0 not checked, 1 matched the offline output, 2 did not
    error_kinds: list[str]
    cpu_percent: list[float] = field(default_factory=list)  # per Locust process
    worker: np.ndarray | None = None  # index into `workers` per row (None: all rows from one unnamed process)
    workers: list[str] = field(default_factory=lambda: [""])  # distributed: the workers' names; "" unnamed
    model_ms: np.ndarray | None = None  # None: no row has one
    app_ms: np.ndarray | None = None
    lag_s: np.ndarray | None = None  # open loop: how late each request began after its scheduled start
    encode_ms: np.ndarray | None = None  # the server's time writing the answer
    binary: np.ndarray | None = None  # 1: the answer came as binary data, 0: as JSON

    @property
    def answered(self) -> np.ndarray:
        """Rows with a whole answer: a 200 whose binary data adds up (a 200 that does not has an error)."""
        return (self.status == 200) & (self.error == 0)

    def __post_init__(self) -> None:
        if self.worker is None:
            self.worker = np.zeros(len(self.start_s), dtype=int)
        for name in TIMED_COLUMNS:
            if getattr(self, name) is None:
                setattr(self, name, np.full(len(self.start_s), np.nan))

    @classmethod
    def from_rows(cls, rows: np.ndarray, error_kinds: list[str], cpu_percent: list[float] | None = None,
                  workers: list[str] | None = None) -> Records:
        """From the locustfile's rows: 5 columns, 8 with the server's times and the generator's lateness, or 10 with
        the server's encoding time and the answer's form."""
        timed = {name: rows[:, 5 + i] if rows.shape[1] > 5 + i else None for i, name in enumerate(TIMED_COLUMNS)}
        return cls(rows[:, 0], rows[:, 1], rows[:, 2].astype(int), rows[:, 3].astype(int), rows[:, 4].astype(int),
                   error_kinds, cpu_percent or [], workers=workers or [""], **timed)

    @classmethod
    def empty(cls) -> Records:
        return cls.from_rows(np.zeros((0, 5 + len(TIMED_COLUMNS))), [""])

    @classmethod
    def load(cls, path: Path) -> Records:
        with np.load(path) as data:
            rows, usage = data["records"], data["usage"]
            kinds = [str(k) for k in data["error_kinds"]]
            name = str(data["worker"]) if "worker" in data.files else ""  # the master names each worker's file
        cpu = [float(100.0 * usage[1] / usage[0])] if usage[0] > 0 else []
        return cls.from_rows(rows, kinds, cpu, [name])

    def merged(self, other: Records, shift_s: float = 0.0) -> Records:
        """Both sets of rows, `other`'s starts moved by shift_s, its error codes and workers renumbered into ours."""
        kinds, errors = _renumbered(self.error_kinds, other.error_kinds, other.error)
        workers, worker = _renumbered(self.workers, other.workers, other.worker)
        return Records(np.concatenate([self.start_s, other.start_s + shift_s]),
                       np.concatenate([self.latency_s, other.latency_s]),
                       np.concatenate([self.status, other.status]), np.concatenate([self.error, errors]),
                       np.concatenate([self.check, other.check]), kinds, self.cpu_percent + other.cpu_percent,
                       np.concatenate([self.worker, worker]), workers,
                       *(np.concatenate([getattr(self, k), getattr(other, k)]) for k in TIMED_COLUMNS))


def _renumbered(names: list[str], other_names: list[str], codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """`names` extended by `other_names`, and `codes` (indices into other_names) as indices into the result."""
    names = list(names)
    remap = []
    for name in other_names:
        if name not in names:
            names.append(name)
        remap.append(names.index(name))
    return names, (np.asarray(remap, dtype=int)[codes] if len(codes) else np.asarray(codes, dtype=int))


def windows_of(records: Records, spans: list[tuple[float, float]], per_span: int) -> list[dict[str, float]]:
    """Each span cut into `per_span` equal windows: start, successful answers a second, p99 (ms)."""
    out = []
    for lo, hi in spans:
        edges = np.linspace(lo, hi, per_span + 1)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            inside = (records.start_s >= a) & (records.start_s < b)
            ok = inside & records.answered
            lat = records.latency_s[ok]
            out.append({"start_s": round(float(a), 6), "answers": int(ok.sum()), "rps": float(ok.sum() / (b - a)),
                        "p99_ms": float(np.percentile(lat, 99) * 1e3) if len(lat) else math.nan})
    return out


def spread(values: list[float]) -> float:
    """(max - min) / median: how far apart a few window figures are, relative to their middle."""
    if any(math.isnan(v) for v in values) or not values:
        return math.inf
    mid = float(np.median(values))
    return (max(values) - min(values)) / mid if mid > 0 else math.inf


def is_stable(windows: list[dict[str, float]], rules: LoadPlan) -> bool:
    """The last windows agree: throughput within max(rps_tolerance, 3/sqrt(n)) (n answers in the smallest
    window: Poisson counting noise), p99 within p99_tolerance, and each window has MIN_WINDOW_ANSWERS."""
    last = windows[-rules.COMPARE_LAST:]
    if len(last) < rules.COMPARE_LAST or min(w["answers"] for w in last) < MIN_WINDOW_ANSWERS:
        return False
    counting = 3 / math.sqrt(min(w["answers"] for w in last))
    return (spread([w["rps"] for w in last]) <= max(rules.RPS_TOLERANCE, counting)
            and spread([w["p99_ms"] for w in last]) <= rules.P99_TOLERANCE)


def step_from_records(records: Records, spans: list[tuple[float, float]], users: int, mode: str,
                      rules: LoadPlan, offered_rps: float | None = None) -> LoadStep:
    """A step's figures from the requests that started inside its measured spans (each run after its warm-up)."""
    chosen = np.zeros(len(records.start_s), dtype=bool)
    for lo, hi in spans:
        chosen |= (records.start_s >= lo) & (records.start_s < hi)
    measured = sum(hi - lo for lo, hi in spans)
    ok = chosen & records.answered
    codes, counts = np.unique(records.error[chosen & ~ok], return_counts=True)
    windows = windows_of(records, spans, rules.WINDOWS)
    latencies = records.latency_s[ok]
    cpu = max(records.cpu_percent) if records.cpu_percent else None
    return LoadStep(
        users=users,
        duration_s=round(measured, 6),
        requests=int(chosen.sum()),
        failures=int((chosen & ~ok).sum()),
        throughput_rps=float(ok.sum() / measured) if measured > 0 else 0.0,
        latency=LatencyStats.from_seconds(latencies.tolist(), keep_samples=False) if ok.any() else None,
        errors={records.error_kinds[c] or "unknown": int(n) for c, n in zip(codes, counts, strict=True)},
        mode=mode,
        offered_rps=offered_rps,
        p999_ms=float(np.percentile(latencies, 99.9) * 1e3) if ok.any() else None,
        stable=is_stable(windows, rules),
        windows=windows,
        loadgen_cpu_percent=cpu,
        loadgen_saturated=cpu is not None and cpu > SATURATED_CPU_PERCENT,
        checked=int((records.check[chosen] > 0).sum()),
        mismatches=int((records.check[chosen] == 2).sum()),
        worker_requests={name: int((chosen & (records.worker == i)).sum())
                         for i, name in enumerate(records.workers) if name},
        **server_split(records, ok),
        **send_lag(records, chosen),
    )


def send_lag(records: Records, chosen: np.ndarray) -> dict[str, Any]:
    """Open loop: how late the generator began its requests after their scheduled starts (ms), as LoadStep fields.
    Each request is charged from its schedule, so a late generator reads as a slow server: a p99 lag near the
    step's p99 latency says the tail is the generator's."""
    lag = records.lag_s[chosen]
    lag = lag[~np.isnan(lag)]
    if not len(lag):
        return {}
    return {"send_lag_p50_ms": float(np.median(lag) * 1e3), "send_lag_p99_ms": float(np.percentile(lag, 99) * 1e3)}


def server_split(records: Records, ok: np.ndarray) -> dict[str, Any]:
    """Where the successful answers' time went, by the server's own Server-Timing: the model call, the writing of
    the answer, the server's handler, and the rest (HTTP, the wire, the kernel, the generator), as LoadStep fields;
    and how many answers came as binary data. Only the answer count where the server sent no timing."""
    binary = {"binary_answers": int((ok & (records.binary == 1)).sum())}
    timed = ok & ~np.isnan(records.app_ms)
    if not timed.any():
        return binary
    app, model, encode = records.app_ms[timed], records.model_ms[timed], records.encode_ms[timed]
    model = model[~np.isnan(model)]  # a batched call has no per-request model time
    encode = encode[~np.isnan(encode)]  # a server other than mcbench's may not say
    outside = records.latency_s[timed] * 1e3 - app
    return {**binary, "server_timed": int(timed.sum()), "server_p50_ms": float(np.median(app)),
            "server_model_p50_ms": float(np.median(model)) if len(model) else None,
            "server_encode_p50_ms": float(np.median(encode)) if len(encode) else None,
            "outside_server_p50_ms": float(np.median(outside))}
