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
    assert out == ["['RunResult', 'UserError', 'VariantResult', 'compare', 'detect_profile', 'execute', 'export', "
                   "'find_profile', 'gate', 'load', 'load_results', 'profiles', 'recommend', 'report', 'run', "
                   "'run_config', 'serve']",
                   "False False"]
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
    assert config.inputs["x"].shape == (1, 4) and config.variants == ("ort-fp32",) and config.quality_budget == "2.0"
    assert mcbench.run_config(quick=True).time_budget_s == 75.0 and mcbench.run_config().time_budget_s == 240.0


def test_every_run_file_key_is_a_keyword_read_as_the_file_reads_it(tmp_path):
    """The keywords derive from the schema: a run file's keys, tables as dicts, and the same config comes out."""
    from mcbench.cli import build_parser
    from mcbench.cli import run_config as cli_config
    from mcbench.config_file import entries
    from mcbench.config_keywords import keywords

    assert keywords() == sorted({key.split(".")[0] for key in entries()})
    assert {"seq_len", "accuracy_budget", "timing", "load", "search", "calibration", "weights"} <= set(keywords())
    settings = {"model": "m.onnx", "seq_len": 64, "accuracy_budget": 2.5, "timing": {"min_runs": 7},
                "load": {"users": [1, 4], "check_every": 3}, "search": {"exclude": ["ov-*"]}, "time_budget": 90,
                "consts": ["sr=16000"], "outputs": ["y=classes"], "cache_dir": False}
    run_file = tmp_path / "run.toml"
    run_file.write_text('model = "m.onnx"\nseq_len = 64\naccuracy_budget = 2.5\ntime_budget = 90\n'
                        'consts = ["sr=16000"]\noutputs = ["y=classes"]\ncache_dir = false\n[timing]\nmin_runs = 7\n'
                        '[load]\nusers = [1, 4]\ncheck_every = 3\n[search]\nexclude = ["ov-*"]\n')
    from_file = cli_config(build_parser().parse_args(["run", "--config", str(run_file)]))
    config = mcbench.run_config(**settings)
    assert config.to_dict() == {**from_file.to_dict(), "model": "m.onnx"}  # the file's model is beside it
    assert (config.seq_len, config.timing.min_runs, config.load.users, config.search_exclude, config.cache_dir) == \
        (64, 7, (1, 4), ("ov-*",), None)


def test_a_python_caller_may_write_none_a_lone_string_a_switch_and_dicts():
    from mcbench.optimizer.cache import default_cache_dir

    config = mcbench.run_config("m.onnx", time_budget=None, cache_dir=None, variants="ort-fp32", load=False,
                                inputs={"x": "1,4"}, consts={"sr": 16000}, search={"exclude": "ov-*"})
    assert (config.time_budget_s, config.cache_dir, config.variants, config.load) == \
        (240.0, default_cache_dir(), ("ort-fp32",), None)
    assert config.inputs["x"].shape == (1, 4) and config.consts["sr"].value == 16000
    assert config.search_exclude == ("ov-*",)


def test_the_quick_preset_and_the_cache_default_come_from_the_schema():
    from mcbench.bench.latency import QUICK_PLAN
    from mcbench.config import QUICK_LOAD, QUICK_TIME_BUDGET_S, RunConfig
    from mcbench.optimizer.cache import default_cache_dir

    quick = mcbench.run_config(quick=True)
    assert (quick.timing, quick.load, quick.time_budget_s) == (QUICK_PLAN, QUICK_LOAD, QUICK_TIME_BUDGET_S)
    assert quick == RunConfig.quick_mode()
    assert RunConfig().cache_dir == default_cache_dir() == mcbench.run_config().cache_dir
    assert mcbench.run_config(cache_dir=False).cache_dir is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"modle": "m.onnx"}, "mcbench.run: unknown keyword 'modle' (did you mean 'model'?)"),
    ({"time_budjet": 60}, "mcbench.run: unknown keyword 'time_budjet' (did you mean 'time_budget'?)"),
    ({"load": {"user": [1]}}, "mcbench.run: keyword 'load.user': unknown key (known: enabled, users, "),
    ({"seq_len": 0}, "mcbench.run: keyword 'seq_len': must be between 1 and 8192 tokens, got 0"),
    ({"load": {"step_seconds": 1.0, "warmup_s": 2.0}},
     "mcbench.run: keyword 'load': a load step of 1.0 s must be longer than its 2.0 s warm-up"),
])
def test_an_unknown_keyword_or_a_refused_value_is_a_user_error_naming_it(kwargs, message):
    with pytest.raises(mcbench.UserError) as info:
        mcbench.run_config("m.onnx", **kwargs)
    assert str(info.value).startswith(message)


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


def test_compare_export_and_report_are_what_the_commands_print(tmp_path, capsys):
    from mcbench.cli import main
    from mcbench.reports.compare import comparison_text
    from mcbench.reports.schema import save_results
    from tests.test_compare import two_runs

    a, b = tmp_path / "a" / "results.json", tmp_path / "b" / "results.json"
    for run, path in zip(two_runs(), (a, b), strict=True):
        path.parent.mkdir()
        save_results(run, path)
    comparison, page = mcbench.compare(a, b)
    assert page == b.with_name("compare.html") and page.read_text().startswith("<!DOCTYPE html>")
    assert comparison.faster and comparison.slower
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "ab.html")]) == 0
    assert capsys.readouterr().out == f"{comparison_text(comparison)}\ncomparison: {tmp_path / 'ab.html'}\n"
    table = mcbench.export(a, "md")
    assert table.startswith("| variant") and table.count("\n") == len(mcbench.load_results(a).variants) + 2
    assert main(["export", str(a), "--format", "md"]) == 0 and capsys.readouterr().out == table
    assert mcbench.export(a, out=tmp_path / "a.csv") == (tmp_path / "a.csv").read_text()
    with pytest.raises(mcbench.UserError, match="^export format 'xlsx' is not one of csv, md$"):
        mcbench.export(a, "xlsx")
    assert mcbench.report(a) == a.with_name("report.html")
    with pytest.raises(mcbench.UserError, match="cannot write"):
        mcbench.report(a, out=a)  # never over the results it reads


def test_the_profiles_are_what_mcbench_profiles_prints(tmp_path, capsys):
    from mcbench.cli import main

    shipped = mcbench.profiles()
    assert main(["profiles", "list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list(shipped)
    assert mcbench.find_profile("local-2core-avx2") == shipped["local-2core-avx2"]
    with pytest.raises(mcbench.UserError, match="^unknown profile 'nope'; shipped profiles: intel-gpu"):
        mcbench.find_profile("nope")
    here = tmp_path / "here.toml"
    text = mcbench.detect_profile("here", out=here)
    assert here.read_text() == text and mcbench.find_profile(here).name == "here"
    with pytest.raises(mcbench.UserError, match="here.toml exists; choose another --out$"):
        mcbench.detect_profile(out=here)
