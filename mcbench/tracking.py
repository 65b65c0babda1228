"""MLflow tracking: a finished run logged as one parent MLflow run, with one nested run per variant.

`mcbench run --mlflow [URI]` logs the run once results.json and report.html are written; `mcbench report
R/results.json --mlflow [URI]` logs an earlier one. MLflow is the optional extra `mcbench[mlflow]` and is
imported here only, only when asked for. Without a URI the store is MLflow's own default: $MLFLOW_TRACKING_URI,
else a SQLite database `mlflow.db` in the current folder (MLflow 3.x refuses its old `./mlruns` file store
unless MLFLOW_ALLOW_FILE_STORE=true), so `mlflow ui` started in the same folder shows the runs. An experiment
this module creates in a local SQLite store keeps its artifacts beside the database, under `mlruns/`.

What is logged, per record of results.json:

- parent run (named by the run id): the model and the run's config as params; the primary quality metric's name
  and budget (reports/quality.py) and the objective that decided (reports/decision.py); tags for the status
  (`ok`, or `failed` where a variant failed), the objective, the recommended variant(s), the baseline, the
  environment; counts of ok, failed and skipped variants as metrics; results.json and report.html as artifacts.
- nested run per variant (named by the variant, `profile:variant` under a hardware profile): params recipe,
  runtime, profile, batch size, device, threads, runtime options, each pass's knobs; metrics `quality` (the
  run's primary metric, named by the `quality_metric` param), `quality_shortfall` (points worse than the
  baseline), every accuracy figure as `accuracy.NAME`, in-process `p50_ms` `p90_ms` `p99_ms` `mean_ms`, load
  `peak_rps` (and `peak_rps_batched`), capacity `capacity_rps` (replicas, costs), `size_bytes`, `parameters`,
  `flops`; tags `status`, `reason` (why it was skipped or failed), `recommendation`, `frontier` ("true" on the
  objective's Pareto frontier, the report's mark); the model file(s) under
  `model/` only with `log_models`. A failed variant's run ends FAILED.

The same results.json (by SHA-256) is logged to an experiment once: a second try names the earlier run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mcbench.base.errors import UsageError, UserError
from mcbench.base.text import clip
from mcbench.reports.schema import RunResult, VariantResult

MISSING = "--mlflow needs MLflow: pip install 'mcbench[mlflow]'"
DEFAULT_EXPERIMENT = "mcbench"
SHA_TAG = "mcbench.results_sha256"
RUN_ID_TAG = "mcbench.run_id"
# MLflow's own limits (mlflow.utils.validation): longer values are refused, so they are cut here.
MAX_PARAM_VALUE, MAX_TAG_VALUE, MAX_KEY, PER_BATCH = 6000, 8000, 250, 100
PROBE_S, WAIT_NOTE_S = 5.0, 5.0  # a store that does not accept a connection in 5 s fails; a slow one is said after 5 s
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}  # MLflow's: 7 and 120 s


class TrackingError(UserError):
    """MLflow is missing, or its store cannot be opened or written: one line for the user."""


@dataclass
class Logged:
    """Where a run went: the store, the experiment, the parent run and each variant's nested run."""

    uri: str
    experiment: str
    experiment_id: str
    parent_id: str
    children: dict[str, str] = field(default_factory=dict)  # variant name -> MLflow run id
    already: bool = False  # this results.json was logged before: nothing new was written
    notes: list[str] = field(default_factory=list)  # what could not be logged (a model file that is gone)

    def summary(self) -> str:
        if self.already:
            return (f"mlflow:  already logged as run {self.parent_id} in experiment {self.experiment!r} "
                    f"({self.uri}); nothing logged")
        nested = f"{len(self.children)} nested run{'' if len(self.children) == 1 else 's'}"
        return f"mlflow:  run {self.parent_id} with {nested} in experiment {self.experiment!r} ({self.uri})"


def _import_mlflow():
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingError(MISSING) from None
    return mlflow, MlflowClient, MlflowException


def resolve_uri(uri: str | None) -> str:
    """The tracking URI: the one given, else MLflow's default. A bare path to a .db file means a SQLite store."""
    mlflow, _, _ = _import_mlflow()
    if not uri:
        return mlflow.get_tracking_uri()  # $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db
    if "://" not in uri and Path(uri).suffix in (".db", ".sqlite", ".sqlite3"):
        return "sqlite:///" + str(Path(uri).resolve())
    database = _sqlite_path(uri)
    if database is not None and not database.is_absolute():  # said and stored as an absolute path
        return "sqlite:///" + str(database.resolve()) + uri[len("sqlite:///" + str(database)):]
    return uri


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a local SQLite URI (sqlite:///relative or sqlite:////absolute), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    name = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if not name or name == ":memory:" else Path(name)


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow and alembic say INFO lines on a store's first use ("Creating initial MLflow database tables")."""
    import logging

    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def masked(uri: str) -> str:
    """The URI as mcbench prints it: a password in it (`http://alice:PW@host/`) shown as `***`."""
    return _USERINFO.sub(r"\1***@", uri)


_USERINFO = re.compile(r"^([A-Za-z][\w+.-]*://[^/?#@:]*:)[^/?#]*@")


def check_reachable(uri: str, shown: str, timeout_s: float = PROBE_S) -> None:
    """Fail in seconds where the store cannot be used: a SQLite file that cannot be written, an HTTP server that
    does not accept a connection. MLflow itself retries for minutes before it says so (issue 32, M7)."""
    database = _sqlite_path(uri)
    if database is not None:
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
            with open(database, "ab"):  # an empty file is a new SQLite database
                pass
        except OSError as exc:
            raise TrackingError(f"MLflow cannot open {shown}: cannot write {database} "
                                f"({exc.strerror or type(exc).__name__})") from None
        return
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or _proxied(parts):
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else getattr(exc, "strerror", None) or str(exc)
        raise TrackingError(f"MLflow cannot reach {shown}: {why} (within {timeout_s:g} s)") from None


def _proxied(parts: urllib.parse.SplitResult) -> bool:
    """Whether requests would reach this store through a proxy ($HTTPS_PROXY ...): then only MLflow can tell."""
    import urllib.request

    return parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname or "")


@contextmanager
def _waiting_note(shown: str) -> Iterator[None]:
    """Say on stderr that the store is slow, once, if it has not answered after WAIT_NOTE_S seconds."""
    note = threading.Timer(WAIT_NOTE_S, lambda: print(f"mlflow:  waiting for {shown} ...", file=sys.stderr, flush=True))
    note.daemon = True
    note.start()
    try:
        yield
    finally:
        note.cancel()


class Tracker:
    """An open MLflow store and experiment. Opened before a run does its work, so a bad URI fails first.

    `uri` is what MLflow is given; `shown` is what mcbench prints, with any password masked.
    """

    def __init__(self, uri: str | None = None, experiment: str | None = None) -> None:
        _, client_class, self._mlflow_error = _import_mlflow()
        self.uri = resolve_uri(uri)
        self.shown = masked(self.uri)
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        database = _sqlite_path(self.uri)
        for name, value in HTTP_LIMITS.items():  # minutes of retries by default; the user's setting wins
            os.environ.setdefault(name, value)
        check_reachable(self.uri, self.shown)
        with self._errors("cannot open"), _quiet(), _waiting_note(self.shown):
            self.client = client_class(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None and found.lifecycle_stage != "active":
                raise TrackingError(f"MLflow: experiment {self.experiment!r} in {self.shown} is deleted; restore it "
                                    "(mlflow experiments restore) or choose another with --mlflow-experiment")
            if found is not None:
                self.experiment_id = found.experiment_id
            else:
                location = None
                if database is not None:  # artifacts beside the database, not in whatever folder this runs in
                    location = (database.resolve().parent / "mlruns" / _safe_folder(self.experiment)).as_uri()
                self.experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """MLflow's and the file system's errors as one TrackingError line naming the store."""
        try:
            yield
        except TrackingError:
            raise
        except Exception as exc:  # MLflow's, SQLAlchemy's, requests' and the file system's errors alike
            text = " ".join(str(getattr(exc, "message", None) or exc).split()).replace(self.uri, self.shown)
            password = urllib.parse.urlsplit(self.uri).password
            text = text.replace(password, "***") if password else text
            raise TrackingError(f"MLflow {doing} {self.shown}: {text[:1000]}") from None

    def log(self, run: RunResult, folder: Path, report: Path | None = None, results: Path | None = None,
            log_models: bool = False) -> Logged:
        """Log `run` as a parent run and its nested runs; the artifacts are results.json and report.html in
        `folder`, or the `results` and `report` files where given."""
        folder = Path(folder)
        results = Path(results) if results is not None else folder / "results.json"
        report = Path(report) if report is not None else folder / "report.html"
        sha = _sha256(results) if results.is_file() else None
        logged = Logged(self.shown, self.experiment, self.experiment_id, parent_id="")
        with self._errors("could not log to"), _quiet(), _waiting_note(self.shown):
            if sha is not None:
                earlier = self.client.search_runs([self.experiment_id], f"tags.`{SHA_TAG}` = '{sha}'", max_results=1)
                if earlier:
                    logged.parent_id, logged.already = earlier[0].info.run_id, True
                    return logged
            parent = self.client.create_run(self.experiment_id, start_time=_created_ms(run), run_name=run.run_id,
                                            tags={RUN_ID_TAG: run.run_id})
            logged.parent_id = parent.info.run_id
            try:
                self._log_parent(run, logged.parent_id, [p for p in (results, report) if p.is_file()])
                for variant in run.variants:
                    logged.children[variant.name] = self._log_variant(run, variant, logged, log_models)
            except BaseException:
                self._end(logged.parent_id, "FAILED")
                raise
            if sha is not None:  # only once all is logged: a half-logged run is no reason to skip the next try
                self.client.set_tag(logged.parent_id, SHA_TAG, sha)
            end = int(results.stat().st_mtime * 1000) if results.is_file() else None
            self._end(logged.parent_id, "FINISHED", end)
        return logged

    def _end(self, run_id: str, status: str, end_ms: int | None = None) -> None:
        try:
            self.client.set_terminated(run_id, status, end_time=end_ms)
        except self._mlflow_error:
            if status == "FINISHED":
                raise

    def _log_parent(self, run: RunResult, run_id: str, files: list[Path]) -> None:
        params, tags, metrics = parent_record(run)
        self._batch(run_id, params, tags, metrics)
        for path in files:
            self.client.log_artifact(run_id, str(path))

    def _log_variant(self, run: RunResult, variant: VariantResult, logged: Logged, log_models: bool) -> str:
        child = self.client.create_run(self.experiment_id, run_name=variant.name,
                                       tags={"mlflow.parentRunId": logged.parent_id})
        run_id = child.info.run_id
        params, tags, metrics = variant_record(run, variant)
        self._batch(run_id, params, tags, metrics)
        if log_models and variant.artifact.get("path"):
            files, missing = model_files(variant)
            for path in files:
                if path.is_dir():
                    self.client.log_artifacts(run_id, str(path), artifact_path=f"model/{path.name}")
                else:
                    self.client.log_artifact(run_id, str(path), artifact_path="model")
            logged.notes += [f"{variant.name}: model file {p} is gone; not logged" for p in missing]
        self._end(run_id, "FAILED" if variant.status == "failed" else "FINISHED")
        return run_id

    def _batch(self, run_id: str, params: dict[str, str], tags: dict[str, str], metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        entities = ([("p", Param(k, v)) for k, v in params.items()] + [("t", RunTag(k, v)) for k, v in tags.items()]
                    + [("m", Metric(k, v, now, 0)) for k, v in metrics.items()])
        for start in range(0, len(entities), PER_BATCH):
            chunk = entities[start:start + PER_BATCH]
            self.client.log_batch(run_id, metrics=[e for kind, e in chunk if kind == "m"],
                                  params=[e for kind, e in chunk if kind == "p"],
                                  tags=[e for kind, e in chunk if kind == "t"])


def add_arguments(parser, after_the_fact: bool = False) -> None:
    """`--mlflow [URI]`, `--mlflow-experiment NAME`, `--mlflow-log-models` on `run` (and on `report`)."""
    when = "log this results.json" if after_the_fact else "when the run has finished, log it"
    parser.add_argument("--mlflow", nargs="?", const="", default=None, metavar="TRACKING_URI",
                        help=f"{when} to MLflow (needs mcbench[mlflow]): one parent run, one nested run a variant; "
                        "default store: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here (artifacts in mlruns/)")
    parser.add_argument("--mlflow-experiment", metavar="NAME",
                        help=f"the MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else {DEFAULT_EXPERIMENT})")
    parser.add_argument("--mlflow-log-models", action="store_true",
                        help="with --mlflow: also log each variant's model file(s) as artifacts")


def tracker_from_args(args) -> Tracker | None:
    """The open store `--mlflow` asks for, None without it; the other --mlflow-* flags alone are a usage error."""
    if args.mlflow is None:
        lone = [f for f, on in (("--mlflow-experiment", args.mlflow_experiment), ("--mlflow-log-models",
                                                                                args.mlflow_log_models)) if on]
        if lone:
            raise UsageError(f"{lone[0]} goes with --mlflow")
        return None
    return Tracker(args.mlflow, args.mlflow_experiment)


# --- what is logged: plain dicts, built from the results schema alone ---------------------------------------------


def parent_record(run: RunResult) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """The parent run's params, tags and metrics."""
    from mcbench.reports.decide import recommendations
    from mcbench.reports.decision import objective_of
    from mcbench.reports.quality import quality_metric

    metric, objective = quality_metric(run), objective_of(run)
    params = {"model": run.model.get("name"), "model.source": run.model.get("source"),
              "quality_metric": metric.key, "quality_budget": metric.budget_text(), "objective": objective.key}
    params.update(_flat("config", {k: v for k, v in run.config.items() if k != "cache_dir"}))
    counts = {s: sum(v.status == s for v in run.variants) for s in ("ok", "failed", "skipped")}
    shipped = [r.variant for r in recommendations(run) if r.kind == "ship" and r.variant]
    tags = {"status": "failed" if counts["failed"] else "ok", "model": run.model.get("name"),
            "baseline": run.baseline, "recommended": ", ".join(shipped) or None, "objective": objective.key,
            "mlflow.note.content": _note(run, counts, shipped)}
    env = run.environment or {}
    tags.update({f"env.{k}": v for k, v in env.items() if _scalar(v)})
    tags.update({f"env.{k}": ", ".join(map(str, v)) for k, v in env.items() if k == "isa" and isinstance(v, list)})
    tags.update(_flat("env.lib", env.get("libraries") or {}))
    metrics = {f"variants_{s}": float(n) for s, n in counts.items()}
    return _params(params), _tags(tags), _metrics(metrics)


def variant_record(run: RunResult, v: VariantResult) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """A variant's params, tags and metrics."""
    from mcbench.reports.decide import recommendations
    from mcbench.reports.decision import frontier_names
    from mcbench.reports.quality import quality_metric, quality_of, shortfall

    metric = quality_metric(run)
    in_process = v.settings.get("in_process") or {}
    params: dict[str, Any] = {
        "variant": v.name, "recipe": " + ".join(v.recipe) or "(the source model)", "runtime": v.runtime,
        "profile": v.profile, "batch_size": v.settings.get("batch_size"), "device": in_process.get("device"),
        "threads": in_process.get("threads"), "format": v.artifact.get("format"), "quality_metric": metric.key,
    }
    params.update(_flat("option", in_process.get("options") or {}))
    seen: dict[str, int] = {}
    for record in v.passes or v.artifact.get("passes") or []:
        name = str(record.get("pass", "pass"))
        seen[name] = seen.get(name, 0) + 1
        name += f".{seen[name]}" if seen[name] > 1 else ""  # a pass twice in one recipe: quant.x, then quant.x.2
        knobs = {k: val for k, val in record.items() if k not in ("pass", "seconds") and _scalar(val)}
        params.update({f"pass.{name}.{k}": val for k, val in knobs.items()} or {f"pass.{name}": "(no settings)"})
    chosen = {r.variant: r.kind for r in recommendations(run) if r.variant}
    tags = {"status": v.status, "reason": v.error if v.status != "ok" else None,
            "exit_status": v.exit_status, "recommendation": chosen.get(v.name),
            "frontier": "true" if v.name in frontier_names(run) else None,
            "baseline": "true" if v.name == run.baseline else None, "warnings": " | ".join(v.warnings) or None,
            "mlflow.note.content": v.settings.get("why")}
    metrics: dict[str, Any] = {"quality": quality_of(v, metric), "quality_shortfall": shortfall(run, v, metric)}
    if v.accuracy is not None:
        acc = v.accuracy
        figures = {"top1": acc.top1, "agreement": acc.agreement, "max_abs_diff": acc.max_abs_diff,
                   "mean_abs_diff": acc.mean_abs_diff, **acc.metrics}
        metrics.update({f"accuracy.{k}": val for k, val in figures.items()})
    if v.latency is not None:
        lat = v.latency
        metrics.update({"p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms, "p99_ms": lat.p99_ms, "mean_ms": lat.mean_ms})
    if v.load is not None:
        load = v.load
        if load.steps or load.open_steps:
            metrics["peak_rps"] = load.peak_throughput_rps
        batched = load.batched_steps + load.batched_open_steps
        if batched:
            metrics["peak_rps_batched"] = max(s.throughput_rps for s in batched)
    if v.capacity is not None:
        cap = v.capacity
        metrics.update({"capacity_rps": cap.max_rps_under_budget, "capacity_budget_p99_ms": cap.budget_p99_ms,
                        "capacity_replicas": cap.replicas, "cost_per_hour": cap.cost_per_hour,
                        "cost_per_million": cap.cost_per_million})
    metrics.update({k: v.artifact.get(k) for k in ("size_bytes", "parameters", "flops")})
    return _params(params), _tags(tags), _metrics(metrics)


def model_files(v: VariantResult) -> tuple[list[Path], list[Path]]:
    """The files that make up a variant's model (an IR's .bin, an ONNX file's external data), and those gone."""
    path = Path(v.artifact["path"])
    files = [path]
    if v.artifact.get("format") == "openvino":
        files.append(path.with_suffix(".bin"))
    elif path.suffix == ".onnx" and path.is_file():
        files += _external_data(path)
    present = [p for p in files if p.exists()]
    return present, [p for p in files if not p.exists()]


def _external_data(path: Path) -> list[Path]:
    """The external-data files an ONNX model names (intake checked they stay inside the model's folder)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a model the run measured loads; anything else is logged as the one file it is
        return []
    names = []
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if location and location not in names:
                names.append(location)
    return [path.parent / n for n in names]


def _note(run: RunResult, counts: dict[str, int], shipped: list[str]) -> str:
    """The parent run's description in the MLflow UI."""
    done = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    text = f"mcbench run {run.run_id} of {run.model.get('name')}: {len(run.variants)} variants ({done})."
    return text + (f" Recommended: {', '.join(shipped)}." if shipped else "")


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _flat(prefix: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts as dotted keys; lists as JSON text."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            out.update(_flat(name, value) if value else {name: "{}"})
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = value
    return out


_BAD_KEY = re.compile(r"[^\w.\- ]")


def _key(name: str) -> str:
    """A name MLflow takes as a param, tag or metric key: word characters, '.', '-', ' ' and '_' only."""
    key = _BAD_KEY.sub("_", name).strip() or "_"
    return ("_" + key if key.startswith(".") else key)[:MAX_KEY]


def _text(value: Any, limit: int) -> str:
    text = json.dumps(value) if isinstance(value, bool) else str(value)  # true/false, as results.json has them
    return clip(text, limit)


def _params(data: dict[str, Any]) -> dict[str, str]:
    return {_key(k): _text(v, MAX_PARAM_VALUE) for k, v in data.items() if v is not None}


def _tags(data: dict[str, Any]) -> dict[str, str]:
    keep = ("mlflow.note.content", "mlflow.parentRunId")
    return {(k if k in keep else _key(k)): _text(v, MAX_TAG_VALUE) for k, v in data.items() if v is not None}


def _metrics(data: dict[str, Any]) -> dict[str, float]:
    """Finite numbers only: a figure the run does not have is left out, never logged as 0 or NaN."""
    return {_key(k): float(v) for k, v in data.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _created_ms(run: RunResult) -> int | None:
    try:
        return int(datetime.fromisoformat(run.created).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def _safe_folder(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name).lstrip(".") or "experiment"
