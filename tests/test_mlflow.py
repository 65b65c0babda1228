"""MLflow tracking (mcbench[mlflow]): a run logged to a real local SQLite store, read back through MLflow's client.

One store a module (creating its tables takes seconds); each test logs to an experiment of its own.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mcbench.cli import main
from mcbench.reports.html import write_report
from mcbench.reports.schema import Capacity, LoadStep, RunResult, VariantResult, save_results
from tests.test_report import latency, load, variant

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="MLflow is not installed: pip install -e '.[dev]' (or '.[mlflow]')")
MISSING = "mcbench: --mlflow needs MLflow: pip install 'mcbench[mlflow]'"


def tracked_run() -> RunResult:
    """A baseline, an INT8 variant with knobs, load and capacity, a skipped variant and a failed one."""
    base = variant("torch-fp32", 0.975, 1.0, 0.400, 0.900, 240_000, [], runtime="torch",
                   load=load([(1, 900.0, 2.1), (4, 1800.0, 4.5)]))
    int8 = variant("ort-int8-dynamic", 0.97, 0.985, 0.250, 0.600, 70_000,
                   ["export.onnx", "quant.int8_dynamic(per_channel=true)"],
                   load=load([(1, 1100.0, 1.9), (4, 2000.0, 3.9)]),
                   capacity=Capacity(5.0, 2000.0, "open-loop", target_rps=5000.0, replicas=3, cost_per_hour=0.75,
                                     cost_per_million=0.104),
                   passes=[{"pass": "quant.int8_dynamic", "weight_type": "QInt8", "per_channel": True, "seconds": 0.5,
                            "sensitivity": {"conv1": 0.1}}],
                   warnings=["in-process median did not settle within 20 s (CV 31%): the machine is noisy"])
    int8.load.open_steps = [LoadStep(users=0, duration_s=10.0, requests=25_000, failures=0, throughput_rps=2500.0,
                                     latency=latency(1.0, 4.0), mode="open", offered_rps=2500.0)]
    int8.settings.update({"why": "INT8 weights, activations quantized at run time", "batch_size": 1})
    int8.settings["in_process"]["options"] = {"graph_optimization_level": "all"}
    skipped = VariantResult("ov-int8-b4", "openvino", ["export.onnx", "quant.int8_static"], "skipped",
                            artifact={"path": "/gone/model.xml", "format": "openvino", "size_bytes": 60_000},
                            settings={"batch_size": 4}, error="the model's batch dimension is fixed at 1")
    failed = VariantResult("ov-fp32", "openvino", ["export.onnx"], "failed", exit_status=-9,
                           error="ChildError: the measuring child was killed (SIGKILL)", stderr_tail="Killed")
    return RunResult(
        run_id="20260102-030405-digits", created="2026-01-02T03:04:05+00:00",
        model={"name": "digits-cnn", "source": "built-in demo"},
        config={"quick": True, "quality_budget": None, "variants": ["ort-int8-dynamic"], "load": {"users": [1, 4]},
                "cache_dir": "/somewhere/cache"},
        environment={"cpu_model": "Test CPU", "isa": ["avx2", "fma"], "logical_cores": 2, "python": "3.11.7",
                     "libraries": {"onnxruntime": "1.20.0", "openvino": None}},
        variants=[base, int8, skipped, failed], baseline="torch-fp32",
    )


def run_folder(where: Path, run: RunResult | None = None) -> tuple[RunResult, Path]:
    """A run folder as `mcbench run` leaves it: results.json and report.html."""
    run = run or tracked_run()
    where.mkdir(parents=True, exist_ok=True)
    save_results(run, where / "results.json")
    write_report(run, where / "report.html")
    return run, where


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def read_back(uri: str, experiment: str):
    """The parent run and the nested runs by name, as MLflow's own client returns them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert len(children) + 1 == len(runs)
    return client, parents[0], children


@needs_mlflow
def test_parent_and_nested_runs_with_params_metrics_tags_and_artifacts(tmp_path, store):
    from mcbench.tracking import Tracker

    run, folder = run_folder(tmp_path / "r")
    logged = Tracker(store, "full").log(run, folder)
    client, parent, children = read_back(store, "full")
    assert parent.info.run_id == logged.parent_id and parent.info.run_name == run.run_id
    assert parent.info.status == "FINISHED" and parent.info.start_time == 1767323045000  # the run's `created`
    assert set(children) == {v.name for v in run.variants}
    assert {name: r.info.run_id for name, r in children.items()} == logged.children

    p = parent.data
    assert p.params["model"] == "digits-cnn" and p.params["quality_metric"] == "top1"
    assert p.params["quality_budget"] == "at most 1 point below the baseline"
    assert p.params["config.quick"] == "true" and p.params["config.variants"] == '["ort-int8-dynamic"]'
    assert p.params["config.load.users"] == "[1, 4]"
    assert "config.cache_dir" not in p.params and "config.quality_budget" not in p.params  # a local path; None
    assert p.metrics == {"variants_ok": 2.0, "variants_failed": 1.0, "variants_skipped": 1.0}
    assert p.tags["status"] == "failed" and p.tags["baseline"] == "torch-fp32"
    assert p.tags["mcbench.run_id"] == run.run_id and len(p.tags["mcbench.results_sha256"]) == 64
    assert p.tags["env.cpu_model"] == "Test CPU" and p.tags["env.isa"] == "avx2, fma"
    assert p.tags["env.lib.onnxruntime"] == "1.20.0" and "env.lib.openvino" not in p.tags
    assert p.tags["recommended"] == "ort-int8-dynamic"  # 0.5 points below the baseline: within the budget
    assert "4 variants (2 ok, 1 failed, 1 skipped)" in p.tags["mlflow.note.content"]
    assert sorted(a.path for a in client.list_artifacts(parent.info.run_id)) == ["report.html", "results.json"]
    local = Path(client.download_artifacts(parent.info.run_id, "results.json", str(tmp_path / "back")))
    assert local.read_bytes() == (folder / "results.json").read_bytes()

    int8, v = children["ort-int8-dynamic"], run.variant("ort-int8-dynamic")
    assert int8.info.status == "FINISHED"
    assert int8.data.params == {
        "variant": "ort-int8-dynamic", "recipe": "export.onnx + quant.int8_dynamic(per_channel=true)",
        "runtime": "onnxruntime", "batch_size": "1", "device": "cpu", "threads": "2", "format": "onnx",
        "quality_metric": "top1", "option.graph_optimization_level": "all",
        "pass.quant.int8_dynamic.weight_type": "QInt8", "pass.quant.int8_dynamic.per_channel": "true",
    }  # a pass's seconds are no knob, and its per-layer figures stay in results.json
    assert int8.data.metrics == {
        "quality": 0.97, "quality_shortfall": 0.5, "accuracy.top1": 0.97, "accuracy.agreement": 0.985,
        "accuracy.max_abs_diff": 0.02, "accuracy.mean_abs_diff": 0.001,
        "p50_ms": v.latency.p50_ms, "p90_ms": v.latency.p90_ms, "p99_ms": v.latency.p99_ms,
        "mean_ms": v.latency.mean_ms, "peak_rps": 2500.0, "capacity_rps": 2000.0, "capacity_budget_p99_ms": 5.0,
        "capacity_replicas": 3.0, "cost_per_hour": 0.75, "cost_per_million": 0.104, "size_bytes": 70_000.0,
    }
    assert int8.data.tags["status"] == "ok" and int8.data.tags["recommendation"] == "ship"
    assert "reason" not in int8.data.tags
    assert int8.data.tags["mlflow.note.content"] == "INT8 weights, activations quantized at run time"
    assert int8.data.tags["warnings"].startswith("in-process median did not settle")
    assert client.list_artifacts(int8.info.run_id) == []  # no model file without --mlflow-log-models

    base = children["torch-fp32"].data
    assert base.params["recipe"] == "(the source model)" and base.params["runtime"] == "torch"
    assert base.tags["baseline"] == "true" and "recommendation" not in base.tags
    assert base.metrics["peak_rps"] == 1800.0 and base.metrics["quality_shortfall"] == 0.0
    assert "capacity_rps" not in base.metrics  # no capacity figure: left out, never logged as 0

    skipped = children["ov-int8-b4"]
    assert skipped.info.status == "FINISHED" and skipped.data.tags["status"] == "skipped"
    assert skipped.data.tags["reason"] == "the model's batch dimension is fixed at 1"
    assert skipped.data.params["batch_size"] == "4" and "profile" not in skipped.data.params
    assert skipped.data.metrics == {"size_bytes": 60_000.0}

    failed = children["ov-fp32"]
    assert failed.info.status == "FAILED" and failed.data.tags["status"] == "failed"
    assert failed.data.tags["reason"] == "ChildError: the measuring child was killed (SIGKILL)"
    assert failed.data.tags["exit_status"] == "-9" and failed.data.metrics == {}


def test_a_profile_variant_names_its_profile():
    from mcbench.tracking_record import variant_record

    run = tracked_run()
    v = run.variant("ort-int8-dynamic")
    v.name, v.profile = "edge-cpu:ort-int8-dynamic", "edge-cpu"
    params, _, _ = variant_record(run, v)
    assert params["profile"] == "edge-cpu" and params["variant"] == "edge-cpu:ort-int8-dynamic"


@needs_mlflow
def test_model_files_only_with_the_flag_an_ir_with_its_bin(tmp_path, store):
    import onnx

    from mcbench.tracking import Tracker
    from tests.conftest import make_linear_onnx

    run = tracked_run()
    (tmp_path / "models").mkdir()
    onnx_file = make_linear_onnx(tmp_path / "models" / "int8.onnx")
    onnx.save_model(onnx.load(str(onnx_file)), str(onnx_file), save_as_external_data=True, location="int8.onnx.data",
                    size_threshold=0)  # its weights in a file beside it, which goes with it
    run.variant("ort-int8-dynamic").artifact["path"] = str(onnx_file)
    ir = tmp_path / "models" / "model.xml"
    ir.write_text("<net/>")
    ir.with_suffix(".bin").write_bytes(b"\0" * 16)
    run.variant("torch-fp32").artifact.update(path=str(ir), format="openvino")
    _, folder = run_folder(tmp_path / "r", run)
    logged = Tracker(store, "models").log(run, folder, log_models=True)
    client, _, children = read_back(store, "models")
    listed = {name: sorted(a.path for a in client.list_artifacts(r.info.run_id, "model"))
              for name, r in children.items()}
    assert listed == {"ort-int8-dynamic": ["model/int8.onnx", "model/int8.onnx.data"],
                      "torch-fp32": ["model/model.bin", "model/model.xml"],
                      "ov-int8-b4": [], "ov-fp32": []}
    assert logged.notes == ["ov-int8-b4: model file /gone/model.xml is gone; not logged",
                            "ov-int8-b4: model file /gone/model.bin is gone; not logged"]


@needs_mlflow
def test_the_same_results_are_logged_once_a_half_logged_try_aside(tmp_path, store, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from mcbench.tracking import Tracker, TrackingError

    run, folder = run_folder(tmp_path / "r")
    real = MlflowClient.log_artifact

    def refuse_the_report(self, run_id, local_path, *args, **kwargs):
        if local_path.endswith("report.html"):
            raise MlflowException("the artifact store is full")
        return real(self, run_id, local_path, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_artifact", refuse_the_report)
    with pytest.raises(TrackingError, match=f"^MLflow could not log to {store}: the artifact store is full$"):
        Tracker(store, "once").log(run, folder)
    monkeypatch.undo()
    first = Tracker(store, "once").log(run, folder)
    again = Tracker(store, "once").log(run, folder)
    assert not first.already and again.already and again.parent_id == first.parent_id and again.children == {}
    assert "already logged as run" in again.summary()
    client = MlflowClient(tracking_uri=store)
    parents = client.search_runs([client.get_experiment_by_name("once").experiment_id],
                                 "tags.`mcbench.run_id` = '20260102-030405-digits'")
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"]  # the half-logged try, then one run


@needs_mlflow
def test_report_command_logs_an_earlier_run(tmp_path, capsys):
    """`mcbench report R/results.json --mlflow URI`: the CLI path, on a results folder (no model run)."""
    _, folder = run_folder(tmp_path / "r")
    uri = f"sqlite:///{tmp_path / 'store' / 'runs.db'}"  # the folder is made
    args = ["report", str(folder / "results.json"), "--mlflow", uri, "--mlflow-experiment", "digits"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"report: {folder / 'report.html'}" in out
    assert "mlflow:  run " in out and "with 4 nested runs in experiment 'digits'" in out
    client, parent, children = read_back(uri, "digits")
    assert len(children) == 4
    experiment = client.get_experiment_by_name("digits")
    assert experiment.artifact_location == (tmp_path / "store" / "mlruns" / "digits").as_uri()  # beside the db
    assert (tmp_path / "store" / "mlruns" / "digits" / parent.info.run_id / "artifacts" / "results.json").is_file()
    assert main(args) == 0
    assert "already logged as run" in capsys.readouterr().out


@needs_mlflow
def test_default_store_is_sqlite_in_the_current_folder(tmp_path, monkeypatch, capsys):
    _, folder = run_folder(tmp_path / "r")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    assert main(["report", str(folder / "results.json"), "--mlflow"]) == 0
    assert f"in experiment 'mcbench' (sqlite:///{tmp_path / 'mlflow.db'})" in capsys.readouterr().out
    read_back(f"sqlite:///{tmp_path / 'mlflow.db'}", "mcbench")
    assert (tmp_path / "mlruns" / "mcbench").is_dir()


@needs_mlflow
def test_a_store_that_cannot_be_opened_is_one_line_exit_2(tmp_path, capsys):
    _, folder = run_folder(tmp_path / "r")
    (tmp_path / "file").write_text("not a folder")
    assert main(["report", str(folder / "results.json"), "--mlflow", f"sqlite:///{tmp_path / 'file' / 'x.db'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mcbench: MLflow cannot open sqlite:///{tmp_path / 'file' / 'x.db'}")


def test_missing_mlflow_is_one_line_exit_2_before_any_work(tmp_path, capsys, monkeypatch, linear_onnx):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    out = tmp_path / "run"
    assert main(["run", "--model", str(linear_onnx), "--quick", "--no-load", "--out", str(out), "--mlflow"]) == 2
    assert capsys.readouterr().err.strip() == MISSING
    assert not out.exists()  # refused before the run did any work
    _, folder = run_folder(tmp_path / "r")
    assert main(["report", str(folder / "results.json"), "--mlflow", "sqlite:///x.db"]) == 2
    assert capsys.readouterr().err.strip() == MISSING


@pytest.mark.parametrize("flag", ["--mlflow-log-models", "--mlflow-experiment=x"])
def test_mlflow_options_need_mlflow_flag(tmp_path, capsys, flag):
    _, folder = run_folder(tmp_path / "r")
    assert main(["report", str(folder / "results.json"), flag]) == 2
    assert capsys.readouterr().err.strip() == f"mcbench: {flag.split('=')[0]} goes with --mlflow"


@needs_mlflow
def test_a_run_that_cannot_be_logged_keeps_its_results_and_exits_1(tmp_path, store, capsys, monkeypatch,
                                                                    linear_onnx):
    """The store opened before the run; logging after it failed: exit 1, and the line that logs it later."""
    from mcbench.pipeline import Pipeline
    from mcbench.run_state import RunPaths
    from mcbench.tracking import Tracker, TrackingError

    out = tmp_path / "run"
    monkeypatch.setattr(Pipeline, "run", lambda self, resume=None: (run_folder(out)[0], RunPaths(out)))

    def refuse(self, *args, **kwargs):
        raise TrackingError(f"MLflow could not log to {self.uri}: the disk is full")

    monkeypatch.setattr(Tracker, "log", refuse)
    args = ["--quick", "--no-load", "--out", str(out), "--mlflow", store, "--mlflow-experiment", "unlogged"]
    assert main(["run", "--model", str(linear_onnx), *args, "--mlflow-log-models"]) == 1
    captured = capsys.readouterr()
    assert f"results: {out / 'results.json'}" in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        f"mcbench: MLflow could not log to {store}: the disk is full; the results are saved: log them with "
        f"`mcbench report {out / 'results.json'} --mlflow {store} --mlflow-experiment unlogged --mlflow-log-models`")


@needs_mlflow
@pytest.mark.slow
def test_run_command_logs_the_finished_run(tmp_path, linear_onnx):
    """`mcbench run ... --mlflow URI --mlflow-log-models` end to end on a tiny ONNX model (the baseline only)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(linear_onnx), "--quick",
                           "--no-load", "--variants", "ort-fp32", "--out", str(out), "--mlflow", uri,
                           "--mlflow-log-models"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "with 1 nested run in experiment 'mcbench'" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    client, parent, children = read_back(uri, "mcbench")
    assert parent.info.run_name == results["run_id"]
    assert sorted(a.path for a in client.list_artifacts(parent.info.run_id)) == ["report.html", "results.json"]
    (name, child), = children.items()
    record = results["variants"][0]
    assert name == record["name"] == "ort-fp32"
    assert child.data.metrics["p50_ms"] == record["latency"]["p50_ms"]
    assert child.data.metrics["size_bytes"] == record["artifact"]["size_bytes"]
    assert [a.path for a in client.list_artifacts(child.info.run_id, "model")] == ["model/linear.onnx"]
