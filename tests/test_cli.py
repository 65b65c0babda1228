"""The command line: errors are one line with exit code 2, and nothing is left behind."""

import subprocess
import sys

import pytest

from mcbench.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mcbench.cli", *args], capture_output=True, text=True, timeout=120)


def test_missing_model_is_one_line_exit_2(tmp_path):
    out = tmp_path / "run"
    proc = _run("run", "--model", str(tmp_path / "nope.onnx"), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"mcbench: cannot load {tmp_path / 'nope.onnx'}: no such file"
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_unresolved_dimension_is_named(tmp_path, capsys):
    from tests.conftest import make_linear_onnx

    path = make_linear_onnx(tmp_path / "dyn.onnx", batch="batch")
    assert main(["run", "--model", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "input 'x' has unresolved dimensions 0 (batch); give them with --input x=N,4" in err
    assert not (tmp_path / "run").exists()


def test_input_without_model_is_refused(capsys):
    assert main(["run", "--input", "x=1,2"]) == 2
    expected = ("mcbench: --input, --const, --weights and --dataset describe a --model; the built-in demo needs "
                "none")
    assert capsys.readouterr().err.strip() == expected


def test_unknown_variant_is_refused_before_work(tmp_path, capsys, linear_onnx):
    assert main(["run", "--model", str(linear_onnx), "--variants", "ort-int3", "--out", str(tmp_path / "r")]) == 2
    assert ("unknown variant(s) ort-int3; this model has: ort-fp32, ort-fp32-t1, ort-fused-fp32, "
            "ort-fused-int8-dynamic, ort-fused-int8-static, ort-int8-dynamic, ort-int8-static, ort-int8-static-pt, "
            "ov-bf16, ov-bf16-pinned, ov-fp32, ov-fp32-pinned, ov-fp32-throughput, ov-int8, ov-int8-weights, "
            "ov-static-bf16, ov-static-fp32, ov-static-int8") in capsys.readouterr().err  # every kind's search space
    assert not (tmp_path / "r").exists()


def test_bad_concurrency_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:  # not numbers: argparse's own error
        main(["run", "--concurrency", "a,b"])
    assert exc.value.code == 2
    for value in ("0", "-1"):  # numbers out of range: the schema's check, one line naming the flag
        assert main(["run", "--concurrency", value]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (f"mcbench: --concurrency: expected a non-empty list of "
                                                            f"positive integers, got [{value}]")


def test_report_of_broken_results_file(tmp_path, capsys):
    bad = tmp_path / "results.json"
    bad.write_text("{")
    assert main(["report", str(bad)]) == 2
    assert f"mcbench: {bad}: not JSON" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    proc = _run("--debug", "run", "--model", str(tmp_path / "nope.onnx"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_pickled_model_refused_through_the_cli(tmp_path, capsys):
    import torch

    from tests import zoo

    torch.save(zoo.conv_net(), tmp_path / "full.pt")
    out = tmp_path / "run"
    assert main(["run", "--model", str(tmp_path / "full.pt"), "--input", "x=1,3,16,16", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mcbench: cannot load {tmp_path / 'full.pt'}: it is a pickle")
    assert not out.exists()


def test_unknown_model_format(tmp_path, capsys):
    (tmp_path / "m.tflite").write_bytes(b"x")
    assert main(["run", "--model", str(tmp_path / "m.tflite"), "--out", str(tmp_path / "r")]) == 2
    assert "unknown model format '.tflite'" in capsys.readouterr().err
