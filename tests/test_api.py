"""The public Python API, through its public names only (`import mcbench`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mcbench


def test_importing_mcbench_is_cheap_and_says_what_is_public():
    code = ("import sys, mcbench; print(sorted(mcbench.__all__)); "
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["['RunResult', 'UserError', 'VariantResult', 'execute', 'gate', 'load_results', 'recommend', "
                   "'report', 'run', 'run_config']", "False False"]
    with pytest.raises(AttributeError, match="no attribute 'Pipeline'"):
        mcbench.Pipeline  # noqa: B018


def test_a_bad_model_raises_the_clis_one_line_message(tmp_path, capsys):
    from mcbench.cli import main

    with pytest.raises(mcbench.UserError) as info:
        mcbench.run(tmp_path / "missing.onnx", out=tmp_path / "r", load=False, progress=None)
    assert main(["run", "--model", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "r2"), "--no-load"]) == 2
    assert capsys.readouterr().err.strip() == f"mcbench: {info.value}"  # the very line the CLI prints
    assert not (tmp_path / "r").exists()


def test_run_config_takes_the_cli_settings():
    config = mcbench.run_config("m.onnx", quick=True, load=False, inputs={"x": "1,4:float32"}, time_budget=0,
                                variants=["ort-fp32"], quality_budget=2)
    assert (config.model, config.quick, config.load, config.time_budget_s) == ("m.onnx", True, None, None)
    assert config.inputs["x"].shape == (1, 4) and config.variants == ("ort-fp32",) and config.quality_budget == "2"
    assert mcbench.run_config(quick=True).time_budget_s == 75.0 and mcbench.run_config().time_budget_s == 240.0


@pytest.mark.slow
def test_run_the_demo_then_report_recommend_and_gate(tmp_path):
    out = tmp_path / "run"
    lines: list[str] = []
    results = mcbench.run(quick=True, load=False, out=out, progress=lines.append, time_budget=0,
                          variants=["ort-fp32", "ort-int8-dynamic"])
    assert isinstance(results, mcbench.RunResult)
    assert [v.name for v in results.variants] == ["torch-fp32", "ort-fp32", "ort-int8-dynamic"]
    assert all(isinstance(v, mcbench.VariantResult) and v.status == "ok" for v in results.variants)
    assert (out / "results.json").exists() and (out / "report.html").exists()
    assert any(line.startswith("[2/3] ort-fp32") for line in lines)
    again = mcbench.load_results(out / "results.json")
    assert [v.latency.p50_ms for v in again.variants] == [v.latency.p50_ms for v in results.variants]
    assert mcbench.report(again, out=tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    rec = mcbench.recommend(again)
    assert rec.kind in ("ship", "nearest-miss") and rec.variant in ("ort-fp32", "ort-int8-dynamic")
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budget]]\nvariant = "ort-fp32"\np50_ms = 1000\n')
    outcome = mcbench.gate(out / "results.json", budgets=budgets)
    assert outcome.exit_code == 0 and any("ort-fp32: p50_ms <= 1000" in c.name for c in outcome.checks)
    budgets.write_text('[[budget]]\nvariant = "ort-fp32"\np50_ms = 0.000001\n')
    assert mcbench.gate(results, budgets=budgets).exit_code == 1
