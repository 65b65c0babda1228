"""`mcbench run --config run.toml`: every bad file is one line naming the file and the key, exit 2, nothing made."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcbench.cli import build_parser, main, run_config


def _write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _refused(tmp_path: Path, capsys, text: str) -> str:
    """Run with the file; assert exit 2, one stderr line, no run folder; return that line."""
    cfg = _write(tmp_path, f'out = "{tmp_path / "out"}"\n' + text)
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    assert not Path("runs").exists() or not any(Path("runs").glob("*-model"))
    return err


BAD_FILES = [
    ("modle = 'x.onnx'", "key 'modle': unknown key (known: accuracy_budget, cache_dir, calibration, consts, dataset, "
                         "exhaustive, inputs, labels, load, metric, model, objective, out, outputs, profiles, "
                         "quality_budget, quick, recipes, search, seq_len, task, text_file, time_budget, timing, "
                         "trust_model, variants, weights)"),
    ("[search]\nskip = ['ov-*']", "key 'search.skip': unknown key (known: exclude, add)"),
    ("[search]\nadd = ['quant.magic']", "key 'search.add[0]': unknown pass 'quant.magic'; known passes: "),
    ("time_budget = -5", "key 'time_budget': must be between 0 and 604800 seconds, got -5.0"),
    ("quality_budget = 'cosine>0.9'", "key 'quality_budget': --quality-budget 'cosine>0.9': expected a number of "
                                      "points (e.g. 1.5) or METRIC>=VALUE / METRIC<=VALUE (e.g. cosine_mean>=0.99)"),
    ("seq_len = 0", "key 'seq_len': must be between 1 and 8192 tokens, got 0"),
    ("accuracy_budget = 120", "key 'accuracy_budget': must be between 0 and 100 percentage points, got 120.0"),
    ("quick = 'yes'", "key 'quick': expected a boolean, got a string 'yes'"),
    ("variants = 'ort-fp32'", "key 'variants': expected a list, got a string 'ort-fp32'"),
    ("variants = [1]", "key 'variants': expected a list of non-empty strings, got an integer 1"),
    ("task = 'ranking'", "key 'task': 'ranking' is not one of classification, regression, embedding"),
    ("[timing]\nmin_runs = 1", "key 'timing.min_runs': must be at least 2, got 1"),
    ("[timing]\nmin_seconds = -1.0", "key 'timing.min_seconds': must be positive, got -1.0"),
    ("[timing]\nmin_seconds = 5.0\nmax_seconds = 1.0", "key 'timing': need 0 < min_seconds <= max_seconds"),
    ("[timing]\nwarmup = 3", "key 'timing.warmup': unknown key (known: warmup_runs, min_runs, min_seconds, "
                             "max_seconds, settle_tolerance)"),
    ("[load]\nusers = [0, 4]", "key 'load.users': expected a non-empty list of positive integers, got [0, 4]"),
    ("[load]\nusers = [true]", "key 'load.users': expected a non-empty list of positive integers, got a boolean True"),
    ("[load]\nstep_seconds = 'ten'", "key 'load.step_seconds': expected a number, got a string 'ten'"),
    ("[load]\nstep_seconds = 1.0\nwarmup_s = 2.0",
     "key 'load': a load step of 1.0 s must be longer than its 2.0 s warm-up"),
    ("[load]\nrates = [50, -1]", "key 'load.rates': expected a list of positive numbers, got [50, -1]"),
    ("[load]\narrivals = 'bursty'", "key 'load.arrivals': 'bursty' is not one of poisson, constant"),
    ("[load]\nmax_batch = 0", "key 'load.max_batch': must be at least 1, got 0"),
    ("[load]\nbudget_p99_ms = 0", "key 'load.budget_p99_ms': must be positive, got 0.0"),
    ("timing = 3", "key 'timing': expected a table, got an integer 3"),
    ("inputs = ['x=0,4']", "key 'inputs': --input 'x=0,4': expected NAME=D1,D2,...[:DTYPE[:LOW-HIGH]] with positive "
                           "integer dimensions"),
    ("recipes = ['quant.int8_static(method=entropy']", "key 'recipes[0]': recipe "),
    ("recipes = ['prune.magic(0.3)']", "key 'recipes[0]': unknown pass 'prune.magic'; known passes: "),
    ("recipes = ['quant.int8_static(colour=blue)']", "key 'recipes[0]': "),
    ("recipes = ['__import__(\"os\").system(\"touch PWNED\")']", "key 'recipes[0]': "),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[t.split("\n")[-1][:30] for t, _ in BAD_FILES])
def test_bad_run_file_is_one_line_exit_2(tmp_path, capsys, text, message):
    err = _refused(tmp_path, capsys, text)
    assert err.startswith(f"mcbench: {tmp_path / 'run.toml'}: {message}"), err
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_unknown_profile_is_named(tmp_path, capsys):
    err = _refused(tmp_path, capsys, "profiles = ['no-such-machine']")
    assert err.startswith(f"mcbench: {tmp_path / 'run.toml'}: key 'profiles': unknown profile 'no-such-machine'")


def test_profile_with_unknown_runtime_is_named(tmp_path, capsys):
    profile = "name = 'odd'\ndevice = 'cpu'\n[cpu]\ncores = 1\nisa = ['avx2']\n[[targets]]\nruntime = 'tensorrt'\n"
    _write(tmp_path, profile, "odd.toml")
    err = _refused(tmp_path, capsys, "profiles = ['odd.toml']")
    assert err.startswith(f"mcbench: {tmp_path / 'run.toml'}: key 'profiles': {tmp_path / 'odd.toml'}: ")
    assert "tensorrt" in err


def test_malformed_toml(tmp_path, capsys):
    cfg = _write(tmp_path, "model = \n")
    assert main(["run", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err.startswith(f"mcbench: {cfg}: not valid TOML (")


def test_missing_and_oversized_files(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err.strip() == f"mcbench: {tmp_path / 'nope.toml'}: no such file"
    big = _write(tmp_path, "# " + "x" * (1024 * 1024 + 10))
    assert main(["run", "--config", str(big)]) == 2
    assert capsys.readouterr().err.strip() == (f"mcbench: {big}: {big.stat().st_size:,} bytes is larger than a "
                                                "run file may be (at most 1 MiB)")


def test_recipes_in_the_file_become_variants_and_flags_replace_them(tmp_path):
    from mcbench.plan import plan_before_loading

    cfg = _write(tmp_path, "recipes = ['q=quant.int8_dynamic', 'prune.unstructured(0.5)']\n")
    config = run_config(build_parser().parse_args(["run", "--config", str(cfg)]))
    assert config.recipes == ("q=quant.int8_dynamic", "prune.unstructured(0.5)")
    names = [s.name for s in plan_before_loading(config).specs]
    assert names == ["torch-fp32", "ort-q", "ov-q", "torch-prune.unstructured-0.5"]
    config = run_config(build_parser().parse_args(["run", "--config", str(cfg), "--recipe", "x=quant.fp16"]))
    assert config.recipes == ("x=quant.fp16",)


def test_file_is_parsed_relative_to_its_folder_and_flags_override_it(tmp_path):
    cfg = _write(tmp_path, """
model = "m.onnx"
inputs = ["x=2,4"]
task = "regression"
accuracy_budget = 2.5
variants = ["ort-int8-dynamic"]
out = "runs/a"
[timing]
min_runs = 5
min_seconds = 0.1
max_seconds = 0.5
[load]
users = [1, 2]
step_seconds = 4.0
""")
    config = run_config(build_parser().parse_args(["run", "--config", str(cfg)]))
    assert config.model == str(tmp_path / "m.onnx")
    assert config.out_dir == tmp_path / "runs" / "a"
    assert config.inputs["x"].shape == (2, 4)
    assert config.task == "regression" and config.variants == ("ort-int8-dynamic",)
    assert (config.timing.min_runs, config.timing.min_seconds, config.timing.max_seconds) == (5, 0.1, 0.5)
    assert config.load.users == (1, 2) and config.load.step_seconds == 4.0
    assert config.accuracy_budget == 2.5
    flags = ["run", "--config", str(cfg), "--task", "embedding", "--out", "elsewhere", "--no-load", "--quick",
             "--accuracy-budget", "0.5"]
    config = run_config(build_parser().parse_args(flags))
    assert config.accuracy_budget == 0.5
    assert config.task == "embedding" and config.out_dir == Path("elsewhere") and config.load is None
    assert config.quick and config.timing.min_runs == 5  # the file's timing still applies over quick mode


def test_load_sweep_and_capacity_keys_reach_the_plan(tmp_path):
    cfg = _write(tmp_path, """
[load]
rates = [50, 100.5]
arrivals = "constant"
budget_p99_ms = 25
target_rps = 1000
cost_per_hour = 0.5
max_batch = 8
max_wait_ms = 3
""")
    load = run_config(build_parser().parse_args(["run", "--config", str(cfg), "--budget-p99-ms", "40"])).load
    assert load.rates == (50.0, 100.5) and load.arrivals == "constant"
    assert load.budget_p99_ms == 40.0  # the flag wins over the file
    assert (load.target_rps, load.cost_per_hour, load.max_batch, load.max_wait_ms) == (1000.0, 0.5, 8, 3.0)


def test_load_disabled_in_file(tmp_path):
    cfg = _write(tmp_path, "[load]\nenabled = false\n")
    assert run_config(build_parser().parse_args(["run", "--config", str(cfg)])).load is None


def test_a_config_is_parsed_never_executed(tmp_path, capsys):
    """TOML has no code: a Python-looking value is just a string that fails validation."""
    err = _refused(tmp_path, capsys, "quick = \"__import__('os').system('touch PWNED')\"")
    assert "key 'quick': expected a boolean, got a string" in err
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
