"""MLflow tracking: a finished run logged as one parent MLflow run, with one nested run per variant.

`mcbench run --mlflow [URI]` logs the run once results.json and report.html are written; `mcbench report
R/results.json --mlflow [URI]` logs an earlier one. MLflow is the optional extra `mcbench[mlflow]` and is
imported here only, only when asked for. Without a URI the store is MLflow's own default: $MLFLOW_TRACKING_URI,
else a SQLite database `mlflow.db` in the current folder (MLflow 3.x refuses its old `./mlruns` file store
unless MLFLOW_ALLOW_FILE_STORE=true), so `mlflow ui` started in the same folder shows the runs. An experiment
this module creates in a local SQLite store keeps its artifacts beside the database, under `mlruns/`.

What is logged is built in `mcbench.tracking_record`; this module opens the store and writes it.

The same results.json (by SHA-256) is logged to an experiment once: a second try names the earlier run.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mcbench.base.errors import UsageError, UserError
from mcbench.reports.schema import RunResult, VariantResult
from mcbench.tracking_record import model_files, parent_record, variant_record

MISSING = "--mlflow needs MLflow: pip install 'mcbench[mlflow]'"
DEFAULT_EXPERIMENT = "mcbench"
SHA_TAG = "mcbench.results_sha256"
RUN_ID_TAG = "mcbench.run_id"
PER_BATCH = 100  # MLflow's limit on params and on tags in one log_batch call (mlflow.utils.validation)
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _created_ms(run: RunResult) -> int | None:
    try:
        return int(datetime.fromisoformat(run.created).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def _safe_folder(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name).lstrip(".") or "experiment"
