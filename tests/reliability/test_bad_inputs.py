"""Bad input from outside (model files, datasets, budgets, arguments) is refused with one line and exit 2,
before work, without running code from the file and without touching earlier results."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mcbench.cli import main
from tests.conftest import make_linear_onnx


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_pickle_that_runs_code_is_refused_and_never_unpickled(tmp_path, capsys):
    import torch

    marker = tmp_path / "PWNED"
    model = tmp_path / "evil.pt"
    torch.save({"model": _Evil(marker)}, model)
    assert main(["run", "--model", str(model), "--input", "x=1,4", "--out", str(tmp_path / "run")]) == 2
    err = _one_line(capsys)
    assert err.startswith(f"mcbench: cannot load {model}: ")
    assert err.endswith("pass --trust-model only if you trust its source")
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "a/../../secret.bin"])
def test_onnx_external_data_cannot_reach_outside_the_model_folder(tmp_path, capsys, location):
    from tests.test_intake import _with_external_location

    path = _with_external_location(tmp_path, location)
    assert main(["run", "--model", str(path), "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys) == (f"mcbench: cannot load {path}: external data '{location}' points outside the "
                                 f"model folder")
    assert not (tmp_path / "run").exists()


def test_truncated_onnx_is_refused(tmp_path, capsys):
    good = make_linear_onnx(tmp_path / "good.onnx").read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(good[: len(good) // 3])
    assert main(["run", "--model", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys).startswith(f"mcbench: cannot load {bad}: ")
    assert not (tmp_path / "run").exists()


def test_bad_model_into_an_existing_folder_keeps_what_was_there(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("earlier work")
    assert main(["run", "--model", str(tmp_path / "nope.onnx"), "--out", str(out)]) == 2
    assert _one_line(capsys) == f"mcbench: cannot load {tmp_path / 'nope.onnx'}: no such file"
    assert (out / "notes.txt").read_text() == "earlier work"


def test_missing_dataset_is_refused(tmp_path, capsys):
    model = make_linear_onnx(tmp_path / "m.onnx")
    assert main(["run", "--model", str(model), "--dataset", str(tmp_path / "val.npz"),
                 "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys) == f"mcbench: cannot load dataset {tmp_path / 'val.npz'}: no such file"
    assert not (tmp_path / "run").exists()


def test_dataset_with_wrong_label_count_is_refused(tmp_path, capsys):
    model = make_linear_onnx(tmp_path / "m.onnx")
    data = tmp_path / "val.npz"
    np.savez(data, x=np.zeros((8, 4), np.float32), labels=np.zeros(5, np.int64))
    assert main(["run", "--model", str(model), "--dataset", str(data), "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys) == f"mcbench: cannot load dataset {data}: 5 labels for 8 samples"
    assert not (tmp_path / "run").exists()


def test_dataset_holding_pickled_objects_is_not_unpickled(tmp_path, capsys):
    model = make_linear_onnx(tmp_path / "m.onnx")
    data = tmp_path / "val.npz"
    marker = tmp_path / "PWNED"
    np.savez(data, x=np.array([_Evil(marker)], dtype=object), labels=np.zeros(1, np.int64))
    assert main(["run", "--model", str(model), "--dataset", str(data), "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys).startswith(f"mcbench: cannot load dataset {data}: ")
    assert not marker.exists()


@pytest.fixture
def results_file(tmp_path) -> Path:
    from mcbench.reports.schema import RunResult, save_results

    path = tmp_path / "results.json"
    save_results(RunResult("r", "2026-01-01T00:00:00", {}, {}, {}, []), path)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("[budgets]\n", "unknown key 'budgets' (known: [defaults], [[budget]])"),
    ("[defaults]\nconfidence = 2.0\n", "[defaults]: key 'confidence': must be between 0 and 1, got 2.0"),
    ("[[budget]]\nvariant = 'ort-*'\np99_ms = 'fast'\n", "[[budget]] #1: key 'p99_ms': expected a number, got 'fast'"),
    ("[[budget]\n", "not valid TOML ("),
])
def test_bad_budgets_file(tmp_path, capsys, results_file, text, message):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(text)
    assert main(["gate", str(results_file), "--budgets", str(budgets)]) == 2
    err = _one_line(capsys)
    assert err.startswith(f"mcbench: {budgets}") and message in err, err


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--concurrency", "1,x"], "argument --concurrency: expected comma-separated integers, got '1,x'"),
    (["run", "--step-seconds", "ten"], "argument --step-seconds: expected a number, got 'ten'"),
    (["run", "--task", "ranking"], "argument --task: invalid choice: 'ranking'"),
])
def test_cli_arguments_out_of_range(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"mcbench run: error: {message}")


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--concurrency", "0"], "--concurrency: expected a non-empty list of positive integers, got [0]"),
    (["run", "--step-seconds", "-1"], "--step-seconds: must be positive, got -1.0"),
    (["run", "--max-seconds", "4000"], "--max-seconds: must be at most 3600, got 4000"),
    (["run", "--min-seconds", "5", "--max-seconds", "1"], "timing: need 0 < min_seconds <= max_seconds"),
    (["run", "--time-budget", "-5"], "--time-budget: must be between 0 and 604800 seconds, got -5.0"),
    (["run", "--rates", "50,-1"], "--rates: expected a list of positive numbers, got [50.0, -1.0]"),
    (["run", "--step-warmup-seconds", "5"], "load: a load step of 4.0 s must be longer than its 5.0 s warm-up"),
    (["load", "--url", "http://127.0.0.1:9", "--model", "m", "--max-step-seconds", "0"],
     "--max-step-seconds: must be positive, got 0.0"),
])
def test_flag_values_out_of_range_are_one_line(capsys, args, message):
    """A flag's value that the setting refuses: one line naming the flag, exit 2, before any work."""
    assert main(args) == 2
    assert _one_line(capsys) == f"mcbench: {message}"


def test_gate_remeasure_out_of_range(capsys, results_file):
    assert main(["gate", str(results_file), "--baseline", str(results_file), "--remeasure", "-1"]) == 2
    assert _one_line(capsys) == "mcbench: --remeasure N needs 5 <= N <= 1000 rounds and a --baseline"
    assert main(["gate", str(results_file), "--baseline", str(results_file), "--remeasure", "4"]) == 2
    assert _one_line(capsys) == "mcbench: --remeasure N needs 5 <= N <= 1000 rounds and a --baseline"
