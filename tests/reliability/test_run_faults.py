"""A long run keeps what finished: crashed variants are recorded and the run goes on; --resume finishes it;
SIGINT/SIGTERM leave a partial report; an unusable output folder is refused before work."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from mcbench import run_state, screen_stage
from mcbench.bench.isolate import call_in_child
from mcbench.cli import main
from mcbench.optimizer.artifact import sha256_of
from tests.reliability import faults
from tests.reliability.conftest import write_run_file

ALL = ["ort-int8-dynamic", "ort-int8-static", "ov-fp32"]


def _faulty_measure(original, faults_by_variant):
    def measure(spec, artifact, target, workload, plan):
        fault = faults_by_variant.get(spec.name)
        return fault() if fault else original(spec, artifact, target, workload, plan)

    return measure


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def _variant(data: dict, name: str) -> dict:
    return next(v for v in data["variants"] if v["name"] == name)


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory, model_dir):
    """One run in which three variants' measuring children segfault, hang past a timeout and run out of memory."""
    folder = tmp_path_factory.mktemp("crashed")
    cfg = write_run_file(folder, model_dir / "linear.onnx", ALL)
    out = folder / "run"
    injected = {
        "ort-int8-dynamic": lambda: call_in_child(faults.segfault),
        "ort-int8-static": lambda: call_in_child(faults.hang, 600, timeout_s=3),
        "ov-fp32": lambda: call_in_child(faults.allocate, 4096, memory_limit_bytes=1536 * 2**20),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(screen_stage, "measure", _faulty_measure(screen_stage.measure, injected))
        code = main(["run", "--config", str(cfg), "--out", str(out), "--no-cache"])  # artifacts in the run folder
    return code, out, cfg


def test_crashes_are_recorded_and_the_run_goes_on(crashed_run):
    code, out, _ = crashed_run
    assert code == 1
    data = _results(out)
    assert [v["status"] for v in data["variants"]] == ["ok", "failed", "failed", "failed"]
    seg = _variant(data, "ort-int8-dynamic")
    assert seg["exit_status"] == -11
    assert seg["error"].startswith("crashed: the process died: signal SIGSEGV (exit status -11)")
    assert "about to read address 0" in seg["stderr_tail"]
    assert "--- last lines of its stderr ---" in seg["error"]


def test_hang_past_timeout_is_recorded(crashed_run):
    hung = _variant(_results(crashed_run[1]), "ort-int8-static")
    assert hung["error"].startswith("timeout: timed out after 3 s; the child was killed; last stderr line: hanging "
                                    "(signal SIGKILL (exit status -9))")
    assert hung["exit_status"] == -9


def test_out_of_memory_is_recorded(crashed_run):
    oom = _variant(_results(crashed_run[1]), "ov-fp32")
    assert oom["error"].startswith("oom: out of memory (limit 1610612736 bytes): MemoryError")
    assert oom["exit_status"] == 0  # it caught MemoryError and reported it: a clean exit


def test_report_shows_the_exit_status_and_stderr(crashed_run):
    html = (crashed_run[1] / "report.html").read_text()
    assert "signal SIGSEGV (exit status -11)" in html
    assert "about to read address 0" in html


@pytest.fixture
def resumable(crashed_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(crashed_run[1], copy)
    results = copy / "results.json"  # as if the run had been made here: its artifact paths point into the copy
    results.write_text(results.read_text().replace(str(crashed_run[1]), str(copy)))
    return copy


def test_resume_keeps_finished_variants_and_reruns_failed_ones(resumable, capsys):
    before = _results(resumable)
    stale = resumable / ".results.json.abc123.tmp"  # what kill -9 in the middle of a write leaves
    stale.write_text('{"half": ')
    assert main(["run", "--resume", str(resumable)]) == 0
    after = _results(resumable)
    assert [v["status"] for v in after["variants"]] == ["ok", "ok", "ok", "ok"]
    assert _variant(after, "ort-fp32") == _variant(before, "ort-fp32")  # kept as it was, not re-measured
    assert after["run_id"] == before["run_id"]
    assert "resumed: 1 finished variant(s) kept from the earlier run, 3 run now" in after["warnings"]
    assert _variant(after, "ort-int8-dynamic")["accuracy"]["agreement"] is not None  # fidelity to the kept baseline
    assert "ort-fp32: kept (ok) from before" in capsys.readouterr().err
    assert (resumable / "report.html").exists()
    assert not stale.exists()
    for v in after["variants"]:  # kept artifacts were built on, not rewritten: every file hashes as recorded
        path = Path(v["artifact"]["path"])
        assert path.is_relative_to(resumable) or path.name == "linear.onnx"  # the model as given, for ort-fp32
        assert sha256_of(Path(v["artifact"]["path"])) == v["artifact"]["sha256"]


def test_resume_with_another_config_is_refused(resumable, crashed_run, capsys):
    before = (resumable / "results.json").read_bytes()
    assert main(["run", "--resume", str(resumable), "--config", str(crashed_run[2]), "--task", "regression"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mcbench: {resumable / 'results.json'}: this run was made with a different config (task: "
                   f"'auto' there, 'regression' now); resume with the same arguments, or with --resume alone")
    assert (resumable / "results.json").read_bytes() == before


def test_resume_of_a_folder_without_results(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"mcbench: {tmp_path}: no results.json to resume (is it a run folder?)"


def test_resume_of_a_broken_results_file(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{\"schema_version\": 1")
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"mcbench: {tmp_path / 'results.json'}: not JSON")
    assert (tmp_path / "results.json").read_text() == "{\"schema_version\": 1"


def test_rerun_into_a_finished_folder_is_refused(crashed_run, capsys):
    code, out, cfg = crashed_run
    before = (out / "results.json").read_bytes()
    assert main(["run", "--config", str(cfg), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"mcbench: {out} already holds a results.json; choose another --out "
                                               f"(or finish it with --resume {out})")
    assert (out / "results.json").read_bytes() == before


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_children_and_keeps_a_partial_report(tmp_path, model_dir, monkeypatch, capsys, signum, code):
    pid_file = tmp_path / "grandchild.pid"

    def hang_then_signal():
        threading.Timer(2.5, os.kill, (os.getpid(), signum)).start()
        return call_in_child(faults.hang_with_grandchild, str(pid_file), timeout_s=120)

    original = screen_stage.measure
    monkeypatch.setattr(screen_stage, "measure",
                        _faulty_measure(original, {"ov-fp32": hang_then_signal}))  # the second: lossless first
    cfg = write_run_file(tmp_path, model_dir / "linear.onnx", ALL)
    out = tmp_path / "run"
    started = time.monotonic()
    assert main(["run", "--config", str(cfg), "--out", str(out)]) == code
    assert time.monotonic() - started < 60
    name = signal.Signals(signum).name
    assert capsys.readouterr().err.strip().endswith(f"mcbench: interrupted by {name}; the finished variants are saved")
    data = _results(out)
    assert [v["name"] for v in data["variants"]] == ["ort-fp32"]
    assert data["variants"][0]["status"] == "ok"
    assert data["warnings"][-1] == (f"interrupted by {name} after 1 of 4 variants: this run is partial; "
                                    f"finish it with `mcbench run --resume {out}`")
    assert "this run is partial" in (out / "report.html").read_text()
    faults.assert_gone(int(pid_file.read_text()), "outlived the interrupted run")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_output_under_a_file_is_refused_before_work(tmp_path, model_dir, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    cfg = write_run_file(tmp_path, model_dir / "linear.onnx", [])
    assert main(["run", "--config", str(cfg), "--out", str(blocker / "run")]) == 2
    assert capsys.readouterr().err.strip() == (f"mcbench: cannot write the run folder {blocker / 'run'}: "
                                               f"{blocker} is not a directory")


def test_full_disk_is_refused_before_work(tmp_path, model_dir, monkeypatch, capsys):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("mcbench.runguard.shutil.disk_usage", lambda p: usage(2**30, 2**30 - 10 * 2**20, 10 * 2**20))
    cfg = write_run_file(tmp_path, model_dir / "linear.onnx", [])
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == (f"mcbench: cannot write the run folder {tmp_path / 'run'}: only 10 MiB "
                                               f"free on its disk, need at least 200 MiB")
    assert not (tmp_path / "run").exists()


def test_write_failure_mid_run_is_clear_and_keeps_the_last_results(tmp_path, model_dir, monkeypatch, capsys):
    real_save = run_state.save_results
    calls = []

    def save(run, path):
        calls.append(len(run.variants))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(run, path)

    monkeypatch.setattr(run_state, "save_results", save)
    cfg = write_run_file(tmp_path, model_dir / "linear.onnx", ["ort-int8-dynamic"])
    out = tmp_path / "run"
    assert main(["run", "--config", str(cfg), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"mcbench: cannot write {out / 'results.json'}: No space left on device; it still holds the results as "
        f"last saved (1 variant(s))")
    assert [v["name"] for v in _results(out)["variants"]] == ["ort-fp32"]
    assert not list(out.glob(".results.json.*.tmp"))  # no temporary file left behind


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_the_mcbench_process(tmp_path, model_dir, signum, code):
    """The real thing: `mcbench run` in its own process gets the signal while it measures its second variant."""
    import subprocess
    import sys

    cfg = write_run_file(tmp_path, model_dir / "linear.onnx", ALL)
    cfg.write_text(cfg.read_text().replace("min_seconds = 0.05\nmax_seconds = 0.3", "min_seconds = 5.0\n"
                                           "max_seconds = 30.0"))
    out = tmp_path / "run"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "mcbench.cli", "run", "--config", str(cfg), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines = []
    for line in proc.stderr:  # progress goes to stderr; wait until the second variant is being measured
        lines.append(line)
        if line.startswith("  measuring") and any(x.startswith("[2/4]") for x in lines):
            break
    time.sleep(1.0)
    children = _children(proc.pid)
    assert children, "no measuring child was running"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == f"mcbench: interrupted by {name}; the finished variants are saved"
    assert f"finish with: mcbench run --resume {out}" in stdout
    data = _results(out)
    assert [v["name"] for v in data["variants"]] == ["ort-fp32"]
    assert data["warnings"][-1].startswith(f"interrupted by {name} after 1 of 4 variants")
    assert (out / "report.html").exists()
    for pid in children:
        faults.assert_gone(pid, "outlived the interrupted run")


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_write_cut_short_leaves_the_previous_results(tmp_path, monkeypatch):
    """An interruption between writing the temporary file and renaming it: the old file stays whole."""
    from mcbench.base import files
    from mcbench.reports import schema

    path = tmp_path / "results.json"
    first = schema.RunResult("r", "2026-01-01T00:00:00", {}, {}, {}, [])
    schema.save_results(first, path)
    before = path.read_bytes()

    def cut(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        schema.save_results(schema.RunResult("r2", "2026-01-02T00:00:00", {}, {}, {}, []), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_read_only_output_folder_is_refused_before_work(tmp_path, model_dir, capsys):
    """/sys is mounted read-only here, and root cannot write it either: a real unwritable folder, not a mock."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir="/sys"):
            pytest.skip("/sys is writable on this machine")
    except OSError:
        pass
    cfg = write_run_file(tmp_path, model_dir / "linear.onnx", [])
    assert main(["run", "--config", str(cfg), "--out", "/sys/mcbench-run"]) == 2
    err = capsys.readouterr().err.strip()  # EACCES here; EROFS ("Read-only file system") on other kernels
    assert err in ("mcbench: cannot write the run folder /sys/mcbench-run: /sys is not writable (Permission denied)",
                   "mcbench: cannot write the run folder /sys/mcbench-run: /sys is not writable (Read-only file "
                   "system)")


def test_results_json_turned_into_a_folder_is_one_line_not_a_traceback(tmp_path):
    from types import SimpleNamespace

    from mcbench.reports.schema import RunResult, VariantResult
    from mcbench.run_state import ResultsWriteError, save

    (tmp_path / "results.json").mkdir()  # someone (or something) replaced the file by a folder mid-run
    run = RunResult(run_id="r", created="2026-12-07T00:00:00+00:00", model={"name": "m"}, config={},
                    environment={}, variants=[VariantResult("a", "onnxruntime", [], status="ok")])
    state = SimpleNamespace(run=run, paths=SimpleNamespace(results=tmp_path / "results.json"))
    with pytest.raises(ResultsWriteError) as info:
        save(state)
    assert str(info.value).startswith(f"cannot write {tmp_path / 'results.json'}: ")
    assert "\n" not in str(info.value) and str(info.value).endswith("(0 variant(s))")
