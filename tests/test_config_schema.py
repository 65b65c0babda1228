"""One config model: every setting of RunConfig, LoadPlan and TimingPlan is declared once (base.settings), and the
run file, the flags, the validation and results.json's `config` all come from that declaration.

The tests run over the schema's fields, so a new field that a run file or a flag cannot set fails here."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mcbench.base.settings import ConfigError, Field, all_fields, choices_of, fields_of
from mcbench.bench.latency import TimingPlan
from mcbench.cli import build_parser, main, run_config
from mcbench.config import LoadPlan, RunConfig, config_from_dict
from mcbench.config_file import entries, keys_table, load_run_file
from mcbench.optimizer.intake import InputConstant, InputOverride

LEAVES = [f for f in all_fields(RunConfig) if f.nested is None]
RECIPE = "q=quant.int8_dynamic"

# Fields whose example a type alone cannot give: (TOML value, the value the field then holds, beside the file).
SPECIAL: dict[str, tuple[str, Any]] = {
    "model": ('"m.onnx"', "{dir}/m.onnx"),
    "inputs": ('["x=2,4:float32"]', {"x": InputOverride((2, 4), "float32")}),
    "outputs": ('["output0=yolov8"]', {"output0": "yolov8"}),
    "consts": ('["sr=16000:int64"]', {"sr": InputConstant(16000, "int64")}),
    "task": ('"regression"', "regression"),
    "metric": ('"mymetrics:f1"', "mymetrics:f1"),
    "profiles": ('["local-2core-avx2"]', ("local-2core-avx2",)),
    "variants": ('["ort-fp32"]', ("ort-fp32",)),
    "recipes": (f'["{RECIPE}"]', (RECIPE,)),
    "quality_budget": ('"agreement>=0.8"', "agreement>=0.8"),
    "search_exclude": ('["ov-*"]', ("ov-*",)),
    "search_add": (f'["{RECIPE}"]', (RECIPE,)),
}
CONTEXT = {"labels_file": 'text_file = "t.txt"\n'}  # a key that needs another to make sense


def _example(f: Field) -> Any:
    """A valid value of the field that is not its default."""
    if f.name in SPECIAL:
        return SPECIAL[f.name][1]
    choices = choices_of(f.setting)
    if choices:
        return next(c for c in choices if c != f.default)
    if f.type is bool:
        return not f.default
    if f.type is Path:
        return Path("data/file.txt")
    if f.item_type is int:
        return (3,)
    if f.item_type is float:
        return (2.5,)
    if f.type is int:
        return f.default + 1
    if f.type is float:
        return 1.5 if f.default is None else f.default * 1.5
    raise AssertionError(f"{f.path}: add an example for a {f.type} setting to SPECIAL")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Path):
        return json.dumps(str(value))
    return json.dumps(value)


def _run_file(tmp_path: Path, f: Field, toml_value: str) -> Path:
    table, _, key = f.key.rpartition(".")
    line = f"{key} = {toml_value}\n"
    head = "" if f.name == "model" else 'model = "m.onnx"\n'
    text = head + CONTEXT.get(f.name, "") + (f"[{table}]\n{line}" if table else line)
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _held(config: RunConfig, f: Field) -> Any:
    section, _, name = f.path.rpartition(".")
    return getattr(getattr(config, section) if section else config, name)


def test_every_field_has_a_run_file_key_and_a_section_that_names_it():
    keyed = {e.field.path for e in entries().values() if not e.switch}
    assert keyed == {f.path for f in LEAVES}
    assert {e.key for e in entries().values() if e.switch} == {"load.enabled"}
    for f in fields_of(RunConfig):  # a nested plan's SECTION is the field that holds it: errors name real paths
        if f.nested is not None:
            assert f.nested.SECTION == f.name


@pytest.mark.parametrize("f", LEAVES, ids=[f.path for f in LEAVES])
def test_every_field_is_settable_from_a_run_file(tmp_path, f):
    example = _example(f)
    assert example != f.default, f"{f.path}: the example must differ from the default"
    toml_value = SPECIAL[f.name][0] if f.name in SPECIAL else _toml(example)
    cfg = _run_file(tmp_path, f, toml_value)
    config = run_config(build_parser().parse_args(["run", "--config", str(cfg), "--allow-code"]))
    if isinstance(example, Path):
        example = tmp_path / example  # relative to the file's folder
    elif isinstance(example, str) and "{dir}" in example:
        example = example.format(dir=tmp_path)
    assert _held(config, f) == example


@pytest.mark.parametrize("f", LEAVES, ids=[f.path for f in LEAVES])
def test_every_field_is_a_keyword_of_mcbench_run_read_as_the_file_reads_it(f):
    """The run file's value, as Python reads the TOML, given as the keyword: the same field holds the same value."""
    import mcbench

    value = tomllib.loads(f"v = {SPECIAL[f.name][0] if f.name in SPECIAL else _toml(_example(f))}")["v"]
    table, _, key = f.key.rpartition(".")
    kwargs = {table: {key: value}} if table else {key: value}
    head = {} if f.name == "model" else {"model": "m.onnx"}
    context = {"text_file": "t.txt"} if f.name == "labels_file" else {}
    config = mcbench.run_config(**head, **context, **kwargs)
    expected = "m.onnx" if f.name == "model" else _example(f)  # paths: relative to the current folder
    assert _held(config, f) == expected
    assert _held(mcbench.run_config(**head, **context), f) != expected


def test_inputs_and_consts_take_a_table_as_outputs_does(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "m.onnx"\n[inputs]\nx = "2,4:float32"\n[consts]\nsr = 16000\n[outputs]\ny = "classes"\n')
    config = run_config(build_parser().parse_args(["run", "--config", str(cfg)]))
    assert config.inputs == {"x": InputOverride((2, 4), "float32")} and config.outputs == {"y": "classes"}
    assert config.consts == {"sr": InputConstant(16000, None)}
    cfg.write_text('model = "m.onnx"\n[inputs]\nx = 4\n')
    with pytest.raises(ConfigError, match="key 'inputs': expected a list of strings NAME=D1,D2"):
        run_config(build_parser().parse_args(["run", "--config", str(cfg)]))


FLAGGED = [f for f in LEAVES if f.setting.flag]


def _flag_args(f: Field) -> list[str]:
    value = _example(f)
    if f.type is bool:
        return [f.setting.flag] if value else []
    if f.name == "inputs":
        return [f.setting.flag, "x=2,4:float32"]
    if f.name == "outputs":
        return [f.setting.flag, "output0=yolov8"]
    if f.name == "consts":
        return [f.setting.flag, "sr=16000:int64"]
    if f.name == "model":
        return [f.setting.flag, "m.onnx"]
    if isinstance(value, tuple):
        texts = [str(v) for v in value]
        if f.setting.repeat:
            return [a for t in texts for a in (f.setting.flag, t)]
        return [f.setting.flag, ",".join(texts)]
    return [f.setting.flag, str(value)]


@pytest.mark.parametrize("f", FLAGGED, ids=[f.setting.flag for f in FLAGGED])
def test_every_flag_sets_the_same_field_as_its_run_file_key(tmp_path, f):
    head = [] if f.name == "model" else ["--model", "m.onnx"]
    context = ["--text-file", "t.txt"] if f.name == "labels_file" else []
    config = run_config(build_parser().parse_args(["run", *head, *context, *_flag_args(f)]))
    example = _example(f)
    expected = "m.onnx" if f.name == "model" else example
    assert _held(config, f) == expected
    assert _held(run_config(build_parser().parse_args(["run", *head, *context])), f) != expected


def _options(parser) -> dict[str, str]:
    """dest -> option string of a parser's flags."""
    return {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}


def _subparser(name: str):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[name]


@pytest.mark.parametrize("command", ["run", "load"])
def test_the_flags_are_the_schemas(command):
    """Every field a command takes a flag for has exactly that flag, with the field's name as its dest, and the help
    is the setting's; no flag of the command sets a field by another name."""
    options = _options(_subparser(command))
    cls = RunConfig if command == "run" else LoadPlan
    declared = {f.name: f.setting.flag for f in all_fields(cls) if f.setting.flag and command in f.setting.commands}
    assert declared and {d: options.get(d) for d in declared} == declared
    names = {f.name for f in all_fields(cls)}
    assert {d for d in options if d in names} == set(declared)
    offs = {f.setting.off_flag for f in all_fields(cls) if f.setting.off_flag and command in f.setting.commands}
    assert offs <= set(options.values())
    helps = {a.dest: a.help for a in _subparser(command)._actions}
    for name in declared:
        field = next(f for f in all_fields(cls) if f.name == name)
        assert helps[name].startswith(field.setting.help)


def test_flags_override_the_file_and_name_themselves_in_errors(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text("cache_dir = false\n[load]\ncheck_every = 3\nrate_fractions = [0.5, 1.0]\n[timing]\nmin_runs = 7\n")
    config = run_config(build_parser().parse_args(["run", "--config", str(cfg), "--min-runs", "9"]))
    assert config.cache_dir is None and config.load.check_every == 3 and config.load.rate_fractions == (0.5, 1.0)
    assert config.timing.min_runs == 9  # the flag wins
    assert main(["run", "--config", str(cfg), "--check-every", "-2"]) == 2
    assert capsys.readouterr().err == "mcbench: --check-every: must not be negative, got -2\n"


# --- validation names the field ----------------------------------------------------------------------------------


def _too_low(f: Field) -> Any:
    s = f.setting
    bad = (s.ge if s.ge is not None else s.gt) - 1
    if f.item_type is not None:
        return (f.item_type(bad),)
    return f.type(bad)


BOUNDED = [f for f in LEAVES if f.setting.ge is not None or f.setting.gt is not None]


@pytest.mark.parametrize("f", BOUNDED, ids=[f.path for f in BOUNDED])
def test_a_bad_value_names_the_field(tmp_path, f):
    """In Python the error names the field's path; in a run file, the file and its key."""
    bad = _too_low(f)
    section, _, name = f.path.rpartition(".")
    cls = {"timing": TimingPlan, "load": LoadPlan, "": RunConfig}[section]
    with pytest.raises(ConfigError) as info:
        cls(**{name: bad})
    assert str(info.value).startswith(f"{f.path}: ") and info.value.key == f.path
    cfg = _run_file(tmp_path, f, _toml(bad))
    with pytest.raises(ConfigError) as info:
        load_run_file(cfg)
    assert str(info.value).startswith(f"{cfg}: key '{f.key}': ")


def test_the_briefs_example_and_the_upper_bounds():
    with pytest.raises(ConfigError, match=r"^load\.step_seconds: must be positive, got -1\.0$"):
        LoadPlan(step_seconds=-1)
    with pytest.raises(ConfigError, match=r"^load\.users: must be at most 10000, got 20000$"):
        LoadPlan(users=(1, 20000))
    with pytest.raises(ConfigError, match=r"^timing\.min_runs: expected an integer, got a number 2\.5$"):
        TimingPlan(min_runs=2.5)
    with pytest.raises(ConfigError, match=r"^seq_len: must be between 1 and 8192 tokens, got 0$"):
        RunConfig(seq_len=0)
    with pytest.raises(ConfigError, match=r"^task: 'ranking' is not one of classification, "):
        RunConfig(task="ranking")


def test_the_constructors_normalise_what_a_caller_passes():
    plan = LoadPlan(users=[1, 2], rates=[5], budget_p99_ms=50)
    assert plan.users == (1, 2) and plan.rates == (5.0,) and isinstance(plan.budget_p99_ms, float)
    assert RunConfig(model="m.onnx", dataset="d.npz").dataset == Path("d.npz")


# --- results.json ------------------------------------------------------------------------------------------------


def _everything_set() -> RunConfig:
    changes = {f.name: _example(f) for f in fields_of(RunConfig) if f.nested is None and f.setting.recorded}
    changes["model"] = "m.onnx"
    del changes["dataset"]  # a text model's text file stands instead
    return RunConfig(timing=TimingPlan(min_runs=7, settle_tolerance=0.5),
                     load=LoadPlan(users=(2,), rate_fractions=(0.3,), check_every=0, target_rps=10.0), **changes)


def test_the_recorded_config_reads_back():
    config = _everything_set()
    recorded = json.loads(json.dumps(config.to_dict()))  # as results.json holds it
    assert "out_dir" not in recorded
    assert config_from_dict(recorded, "results.json") == config
    assert config_from_dict(RunConfig(load=None).to_dict(), "r").load is None


def test_a_config_recorded_before_the_later_fields_still_reads_back():
    """What a results.json from an early version records: the search's, the recipes', the text model's keys absent."""
    old = {"model": "m.onnx", "weights": None, "trust_model": False, "dataset": None, "task": "classification",
           "profiles": [], "inputs": {"x": {"shape": [1, 4], "dtype": None, "low": None, "high": None}},
           "quick": True, "timing": {"warmup_runs": 5, "min_runs": 30, "min_seconds": 0.5, "max_seconds": 3.0,
                                     "settle_tolerance": 0.05},
           "load": {"users": [1, 4], "step_seconds": 3.0, "warmup_s": 0.5}, "variants": ["ort-fp32"]}
    config = config_from_dict(old, "results.json")
    assert config.exhaustive is True and config.time_budget_s is None  # runs before the search tried everything
    assert config.load.users == (1, 4) and config.load.max_step_seconds == LoadPlan().max_step_seconds
    assert config.inputs == {"x": InputOverride((1, 4))} and config.accuracy_budget == 1.0
    assert config.consts == {}
    with pytest.raises(ConfigError, match=r"^r\.json: the recorded config cannot be read back \(KeyError: 'task'\)"):
        config_from_dict({k: v for k, v in old.items() if k != "task"}, "r.json")
    with pytest.raises(ConfigError, match=r"cannot be read back \(KeyError: \"LoadPlan has no setting 'bogus'\"\)"):
        config_from_dict({**old, "load": {"bogus": 1}}, "r.json")


# --- the documentation's table -----------------------------------------------------------------------------------


def test_the_run_files_page_lists_every_run_file_key():
    page = (Path(__file__).parents[1] / "docs" / "run-files.md").read_text(encoding="utf-8")
    table = keys_table()
    assert table in page, ("docs/run-files.md's run-file keys are stale: regenerate them with "
                           "`python -m mcbench.docs_tables --write`")
    for key in entries():
        assert f"| `{key}` |" in table
