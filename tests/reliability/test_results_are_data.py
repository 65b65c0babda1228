"""Issue 32, High rows H1-H4, H6 and Medium M4 (file kinds), M8: a results file is data, every read is bounded,
an output never replaces an input or a device."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

import mcbench
from mcbench.cli import main
from mcbench.reports.schema import save_results
from tests.reliability.conftest import write_run_file
from tests.reliability.test_bad_inputs import _one_line
from tests.test_report import sample_run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, model_dir) -> Path:
    """A real finished run of one onnxruntime variant (no load test): its results.json can be re-measured."""
    folder = tmp_path_factory.mktemp("finished")
    assert main(["run", "--config", str(write_run_file(folder, model_dir / "linear.onnx", ["ort-fp32"])),
                 "--out", str(folder / "run")]) == 0
    return folder / "run"


def _copy(run: Path, where: Path) -> Path:
    copy = where / run.name
    shutil.copytree(run, copy)
    return copy


def _name_code(results: Path, factory: str, factory_args: dict | None = None, metric: str | None = None) -> Path:
    """The results file rewritten as a hostile one would be: its variants are torch artifacts made by `factory`."""
    data = json.loads(results.read_text())
    for v in data["variants"]:
        v["artifact"] |= {"format": "torch", "factory": factory, **({"factory_args": factory_args} if factory_args
                                                                     else {})}
        v["settings"]["in_process"]["runtime"] = "torch"
    if metric is not None:
        data["config"]["metric"] = metric
    results.write_text(json.dumps(data))
    return results


EVIL = "from pathlib import Path\nPath('PWNED').write_text('imported')\ndef f(*a, **k):\n    raise RuntimeError('no')\n"


@pytest.fixture
def evil_folder(tmp_path, monkeypatch) -> Path:
    """The current folder holds evil.py, which leaves PWNED when imported."""
    (tmp_path / "evil.py").write_text(EVIL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    import sys

    sys.modules.pop("evil", None)


# --- H1: gate --remeasure runs no code a results file names -------------------------------------------------------


def test_h1_gate_remeasure_never_calls_a_factory_named_by_a_results_file(finished_run, evil_folder, capsys):
    run = _copy(finished_run, evil_folder)
    marker = evil_folder / "PWNED_BY_SHELL"
    cand = _name_code(run / "results.json", "subprocess:run", {"args": ["sh", "-c", f"touch {marker}"]})
    assert main(["gate", str(cand), "--baseline", str(finished_run / "results.json"), "--remeasure", "5"]) == 2
    assert _one_line(capsys) == (
        f"mcbench: {cand}: variant 'ort-fp32' names code (factory 'subprocess:run'); a results file is data, "
        "so it runs code only with --allow-code")
    assert not marker.exists()


def test_h1_the_python_gate_refuses_it_too(finished_run, evil_folder):
    run = _copy(finished_run, evil_folder)
    cand = _name_code(run / "results.json", "evil:f")
    with pytest.raises(mcbench.UserError, match=r"names code \(factory 'evil:f'\).*--allow-code|allow_code=True"):
        mcbench.gate(cand, baseline=finished_run / "results.json", remeasure=5)
    assert not (evil_folder / "PWNED").exists()


def test_h1_allow_code_lets_the_gate_call_the_factory(finished_run, evil_folder, capsys):
    run = _copy(finished_run, evil_folder)
    cand = _name_code(run / "results.json", "evil:f")
    code = main(["gate", str(cand), "--baseline", str(finished_run / "results.json"), "--remeasure", "5",
                 "--allow-code"])
    assert (evil_folder / "PWNED").read_text() == "imported"  # the user asked for it
    assert code == 2
    assert "the factory raised RuntimeError: no" in capsys.readouterr().err


# --- H2: serve RUN:variant and run --resume RUN likewise -----------------------------------------------------------


def test_h2_serve_a_variant_never_imports_its_factory(finished_run, evil_folder, capsys):
    run = _copy(finished_run, evil_folder)
    results = _name_code(run / "results.json", "evil:f")
    assert main(["serve", f"{run}:ort-fp32", "--port", "0"]) == 2
    assert _one_line(capsys) == (f"mcbench: {results}: variant 'ort-fp32' names code (factory 'evil:f'); a results "
                                 "file is data, so it runs code only with --allow-code")
    assert not (evil_folder / "PWNED").exists()


def test_h2_resume_never_imports_a_metric_named_by_the_results(finished_run, evil_folder, capsys):
    run = _copy(finished_run, evil_folder)
    data = json.loads((run / "results.json").read_text())
    data["config"]["metric"] = "evil:f"
    data["variants"][0]["status"] = "failed"  # something left to do
    (run / "results.json").write_text(json.dumps(data))
    assert main(["run", "--resume", str(run)]) == 2
    assert _one_line(capsys) == (f"mcbench: {run / 'results.json'}: its config names code (metric 'evil:f'); a "
                                 "results file is data, so it runs code only with --allow-code")
    assert not (evil_folder / "PWNED").exists()


def test_h2_resume_never_imports_a_model_factory_named_by_the_results(finished_run, evil_folder, capsys):
    run = _copy(finished_run, evil_folder)
    data = json.loads((run / "results.json").read_text())
    data["config"]["model"] = "evil:f"
    (run / "results.json").write_text(json.dumps(data))
    assert main(["run", "--resume", str(run)]) == 2
    assert _one_line(capsys) == (f"mcbench: {run / 'results.json'}: its config names code (model 'evil:f'); a "
                                 "results file is data, so it runs code only with --allow-code")
    assert not (evil_folder / "PWNED").exists()


# --- H3: an output is never one of the inputs, nor a device -------------------------------------------------------


@pytest.fixture
def results_file(tmp_path) -> Path:
    path = tmp_path / "R" / "results.json"
    path.parent.mkdir()
    save_results(sample_run(), path)
    return path


@pytest.mark.parametrize("command", [
    ["report", "{r}", "--out", "{r}"],
    ["export", "{r}", "--out", "{r}"],
    ["compare", "{r}", "{r}", "--out", "{r}"],
    ["gate", "{r}", "--budgets", "{b}", "--junit", "{r}"],
    ["gate", "{r}", "--budgets", "{b}", "--markdown", "{b}"],
])
def test_h3_an_output_that_is_an_input_is_refused_and_the_input_kept(results_file, capsys, command):
    budgets = results_file.with_name("budgets.toml")
    budgets.write_text("[[budget]]\nvariant = 'ort-*'\np99_ms = 1000\n")
    before = results_file.read_bytes(), budgets.read_bytes()
    argv = [a.format(r=results_file, b=budgets) for a in command]
    assert main(argv) == 2
    out = Path(argv[-1])
    assert _one_line(capsys) == (f"mcbench: cannot write {out}: it is one of this command's inputs ({out}); "
                                 "choose another output")
    assert (results_file.read_bytes(), budgets.read_bytes()) == before


def _device_node(folder: Path) -> Path:
    """A character device of our own (the null device's numbers), so no real device is ever touched."""
    node = folder / "null-device"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return node


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
@pytest.mark.parametrize("flag", [["report", "--out"], ["export", "--out"], ["gate", "--junit"]])
def test_h3_an_output_that_is_not_a_regular_file_is_refused_and_left_as_it_is(results_file, tmp_path, capsys,
                                                                             kind, flag):
    if kind == "device":
        out, what = _device_node(tmp_path), "a device"
    elif kind == "fifo":
        out, what = tmp_path / "fifo", "a FIFO"
        os.mkfifo(out)
    else:
        out, what = tmp_path / "folder", "a directory"
        out.mkdir()
    mode = os.stat(out).st_mode
    extra = ["--budgets", str(_budgets(tmp_path))] if flag[0] == "gate" else []
    assert main([flag[0], str(results_file), *extra, flag[1], str(out)]) == 2
    assert _one_line(capsys) == f"mcbench: cannot write {out}: it is {what}, not a regular file; give a file path"
    assert os.stat(out).st_mode == mode


def _budgets(folder: Path) -> Path:
    path = folder / "budgets.toml"
    path.write_text("[[budget]]\nvariant = 'ort-*'\np99_ms = 1000\n")
    return path


def test_h3_the_python_report_refuses_to_write_over_its_results(results_file):
    with pytest.raises(mcbench.UserError, match="is one of this command's inputs"):
        mcbench.report(results_file, out=results_file)
    assert json.loads(results_file.read_text())["run_id"] == sample_run().run_id


# --- H4: the Python run refuses a finished run's folder, as the CLI does -----------------------------------------


def test_h4_run_refuses_an_out_folder_holding_a_finished_run(finished_run, model_dir, tmp_path):
    run = _copy(finished_run, tmp_path)
    before = (run / "results.json").read_bytes(), (run / "report.html").read_bytes()
    with pytest.raises(mcbench.UserError) as info:
        mcbench.run(model_dir / "linear.onnx", out=run, quick=True, load=False, variants=["ort-fp32"], progress=None)
    assert str(info.value) == (f"{run} already holds a results.json; choose another --out "
                               f"(or finish it with --resume {run})")
    assert ((run / "results.json").read_bytes(), (run / "report.html").read_bytes()) == before


# --- H6 and M4: every read is bounded; a device, FIFO, folder or link loop is refused, not read -------------------


@pytest.mark.parametrize("command", [["report", "{f}"], ["export", "{f}"], ["gate", "{f}", "--budgets", "{b}"],
                                     ["compare", "{r}", "{f}"], ["report", "{f}", "{r}"]])
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory", "loop"])
def test_h6_m4_a_results_path_that_is_no_regular_file_is_refused_without_reading(results_file, tmp_path, capsys,
                                                                                 command, kind):
    if kind == "fifo":
        path = tmp_path / "fifo.json"
        os.mkfifo(path)
        what = "a FIFO, not a regular file; give a results file"
    elif kind == "directory":
        path = tmp_path / "folder.json"
        path.mkdir()
        what = "a directory, not a regular file; give a results file"
    elif kind == "loop":
        path = tmp_path / "loop.json"
        path.symlink_to(tmp_path / "loop2.json")
        (tmp_path / "loop2.json").symlink_to(path)
        what = "a symbolic link loop"
    else:
        path, what = Path(kind), "a device, not a regular file; give a results file"
    argv = [a.format(f=path, r=results_file, b=_budgets(tmp_path)) for a in command]
    done = threading.Event()
    timer = threading.Timer(30, lambda: done.is_set() or _unblock(path))  # a hang must not hang the suite
    timer.start()
    try:
        assert main(argv) == 2
    finally:
        done.set()
        timer.cancel()
    assert _one_line(capsys) == f"mcbench: {path}: {what}"


def _unblock(fifo: Path) -> None:
    with open(fifo, "w"):
        pass


def test_h6_a_results_file_past_its_limit_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MCBENCH_MAX_RESULTS_MB", "1")
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(2 * 2**20)  # sparse: 2 MiB that take no disk
    assert main(["report", str(path)]) == 2
    assert _one_line(capsys) == f"mcbench: {path}: 2 MiB is larger than a results file may be (at most 1 MiB)"


@pytest.mark.parametrize(("what", "argv"), [
    ("budgets file", ["gate", "{r}", "--budgets", "{f}"]),
    ("profile", ["profiles", "show", "{f}"]),
    ("run file", ["run", "--config", "{f}"]),
])
def test_h6_budgets_profiles_and_run_files_are_bounded_and_never_read_from_a_device(results_file, tmp_path, capsys,
                                                                                     what, argv):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(2 * 2**20)
    for path, message in [(big, f"2 MiB is larger than a {what} may be (at most 1 MiB)"),
                          (_device_node(tmp_path), f"a device, not a regular file; give a {what}")]:
        assert main([a.format(r=results_file, f=path) for a in argv]) == 2
        assert _one_line(capsys) == f"mcbench: {path}: {message}"
        path.unlink()


# --- M8: the gate's rounds have documented upper bounds ----------------------------------------------------------


def test_m8_remeasure_is_bounded(results_file, capsys):
    assert main(["gate", str(results_file), "--baseline", str(results_file), "--remeasure", "1000000000"]) == 2
    assert _one_line(capsys) == "mcbench: --remeasure N needs 5 <= N <= 1000 rounds and a --baseline"
    with pytest.raises(mcbench.UserError, match="5 <= N <= 1000"):
        mcbench.gate(results_file, baseline=results_file, remeasure=10**9)


def test_m8_max_rounds_factor_is_bounded(results_file, tmp_path, capsys):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text("[defaults]\nmax_rounds_factor = 1000000000\n")
    assert main(["gate", str(results_file), "--budgets", str(budgets)]) == 2
    assert _one_line(capsys) == (f"mcbench: {budgets}: [defaults]: key 'max_rounds_factor': must be at most 10, "
                                 "got 1000000000")


def test_the_factories_mcbench_records_itself_are_the_ones_the_code_rule_allows():
    from mcbench.bench.calibration import FACTORY as SPINNER
    from mcbench.code_rule import OWN_FACTORIES
    from mcbench.demo import DEMO_FACTORY
    from mcbench.optimizer.intake_hf import FACTORY as HF

    assert {SPINNER, DEMO_FACTORY, HF} == OWN_FACTORIES
