"""Hardware profiles: the shipped ones load, every validation error names file, key and problem."""

import tomllib

import pytest

from mcbench.cli import main
from mcbench.optimizer.profiles import (
    ProfileError,
    detect_profile,
    find_profile,
    load_profile,
    parse_profile,
    profile_paths,
)

GOOD = {"name": "p", "cpu": {"cores": 2, "isa": ["avx2"]}, "targets": [{"runtime": "onnxruntime"}]}


def test_shipped_profiles_load():
    names = set(profile_paths())
    assert {"local-2core-avx2", "xeon-avx512-vnni", "nvidia-gpu", "intel-gpu"} <= names
    gpu = find_profile("nvidia-gpu")
    assert gpu.device == "nvidia-gpu"
    assert gpu.targets[0].providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert find_profile("xeon-avx512-vnni").has_int8_acceleration
    assert not find_profile("local-2core-avx2").has_int8_acceleration


def _with(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD.items()}
    data.update(changes)
    return data


@pytest.mark.parametrize("data, message", [
    (_with(colour="red"), "p.toml: colour: unknown key"),
    (_with(name=3), "p.toml: name: expected a string, got 3"),
    (_with(device="tpu"), "p.toml: device: 'tpu' is not one of cpu, nvidia-gpu, intel-gpu"),
    (_with(cpu={"cores": 0}), r"p.toml: cpu.cores: expected a list of integers >= 1, got \[0\]"),
    (_with(cpu={"cores": 2, "isa": ["sse9"]}), "p.toml: cpu.isa: 'sse9' not among avx2"),
    (_with(cpu={"cores": 2, "threads": 4}), "p.toml: cpu: unknown key.s. threads"),
    (_with(targets=[]), r"p.toml: targets: expected at least one \[\[targets\]\] table"),
    (_with(targets=[{"runtime": "tensorrt"}]), "p.toml: targets.0..runtime: 'tensorrt' is not one of onnxruntime"),
    (_with(targets=[{"runtime": "onnxruntime", "providers": ["ROCMExecutionProvider"]}]),
     "p.toml: targets.0..providers: 'ROCMExecutionProvider' not among CPUExecutionProvider"),
    (_with(targets=[{"runtime": "openvino", "hints": ["FAST"]}]), "p.toml: targets.0..hints: 'FAST' not among LATENCY"),
    (_with(targets=[{"runtime": "onnxruntime", "threads": [0]}]), r"targets.0..threads: expected a list of integers"),
    (_with(targets=[{"runtime": "openvino", "pin_threads": "yes"}]),
     "p.toml: targets.0..pin_threads: expected true or false, got 'yes'"),
    (_with(cost_per_hour=-1), "p.toml: cost_per_hour: expected a number >= 0, got -1"),
    (_with(capacity={"latency_budget_ms": "fast"}), "p.toml: capacity.latency_budget_ms: expected a number"),
])
def test_validation_errors_name_file_key_and_problem(data, message):
    with pytest.raises(ProfileError, match=message):
        parse_profile(data, "p.toml")


def test_openvino_threads_are_pinned_under_the_throughput_hint_unless_the_profile_says():
    from mcbench.optimizer.recipes import profile_variants
    from mcbench.optimizer.targets import openvino_config

    def pinned(**target) -> dict[str, bool]:
        profile = parse_profile(_with(targets=[{"runtime": "openvino", "hints": ["LATENCY", "THROUGHPUT"], **target}]),
                                "p.toml")
        return {v.name: openvino_config(v.target)["ENABLE_CPU_PINNING"] for v in profile_variants(profile, False)}

    assert pinned() == {"ov-fp32": False, "ov-fp32-throughput": True}
    assert pinned(pin_threads=True) == {"ov-fp32": True, "ov-fp32-throughput": True}
    assert pinned(pin_threads=False) == {"ov-fp32": False, "ov-fp32-throughput": False}


def test_bad_toml_and_missing_file(tmp_path):
    (tmp_path / "bad.toml").write_text("name = [")
    with pytest.raises(ProfileError, match="bad.toml: not valid TOML"):
        load_profile(tmp_path / "bad.toml")
    with pytest.raises(ProfileError, match="none.toml: no such profile file"):
        load_profile(tmp_path / "none.toml")


def test_detect_writes_a_valid_profile_of_this_machine(tmp_path, capsys):
    text = detect_profile("here")
    profile = parse_profile(tomllib.loads(text), "detected")
    assert profile.name == "here" and profile.cores >= 1
    assert {t.runtime for t in profile.targets} >= {"onnxruntime", "torch"}
    assert main(["profiles", "detect", "--out", str(tmp_path / "here.toml")]) == 0
    assert load_profile(tmp_path / "here.toml").targets


def test_profiles_cli_list_and_unknown(capsys):
    assert main(["profiles", "list"]) == 0
    assert "nvidia-gpu" in capsys.readouterr().out
    assert main(["profiles", "show", "nope"]) == 2
    assert "unknown profile 'nope'; shipped profiles: intel-gpu" in capsys.readouterr().err
