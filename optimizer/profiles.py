"""Hardware profiles: what a target machine is and how to run on it, one TOML file a machine.

Parsed with tomllib (never executed) and validated on load; every error names the file, the key
and the problem. `detect_profile` writes one for the machine it runs on from real facts: CPU flags,
core count, installed onnxruntime execution providers and OpenVINO devices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcbench.base.errors import UserError
from mcbench.base.files import FileError, read_bytes
from mcbench.base.parsing import ParseError, toml_data
from mcbench.optimizer.hardware import ISA_FLAGS as ISA
from mcbench.optimizer.recipe_syntax import RecipeError, parse_named_recipe

PROFILE_DIR = Path(__file__).parent.parent / "hardware_profiles"  # mcbench/hardware_profiles: a link in a checkout
DEVICES = ("cpu", "nvidia-gpu", "intel-gpu")
ORT_PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
                 "OpenVINOExecutionProvider")
OV_DEVICES = ("CPU", "GPU")
OV_HINTS = ("LATENCY", "THROUGHPUT")
OV_PRECISIONS = ("f32", "f16", "bf16")


class ProfileError(UserError):
    """A profile that cannot be used: `file: key: problem`."""


@dataclass(frozen=True)
class RuntimeTarget:
    """One runtime of a profile with the settings to try; lists expand into the variant matrix."""

    runtime: str  # onnxruntime | openvino | torch
    providers: tuple[str, ...] = ("CPUExecutionProvider",)  # onnxruntime
    device: str = "CPU"  # openvino
    hints: tuple[str, ...] = ("LATENCY",)  # openvino
    streams: int | None = None  # openvino; None: the hint decides
    precision: str = "f32"  # openvino inference precision
    threads: tuple[int, ...] = ()  # empty: the profile's server cores
    pin_threads: bool | None = None  # openvino CPU: pin threads to cores; None: only under the throughput hint


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    device: str
    cores: int
    isa: tuple[str, ...]
    targets: tuple[RuntimeTarget, ...]
    batch_sizes: tuple[int, ...] = (1,)
    server_cores: tuple[int, ...] = ()
    loadgen_cores: tuple[int, ...] = ()
    cost_per_hour: float | None = None
    latency_budget_ms: float | None = None
    target_rps: float | None = None
    source: str = ""  # the file it came from
    recipes: tuple[str, ...] = ()  # `[NAME=]RECIPE` texts, expanded for each of the profile's runtimes
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_int8_acceleration(self) -> bool:
        return any(f in self.isa for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


_TOP_KEYS = {"name", "description", "device", "cost_per_hour", "batch_sizes", "cpu", "server", "loadgen",
             "capacity", "targets", "recipes"}
_TARGET_KEYS = {"runtime", "providers", "device", "hints", "streams", "precision", "threads", "pin_threads"}


class _Reader:
    """Typed access to a parsed TOML table, raising ProfileError with the file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.source}: {key}: {problem}")

    def table(self, data: dict, key: str, allowed: set[str]) -> dict:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(key, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        return value

    def string(self, data: dict, key: str, path: str, choices: tuple[str, ...] | None = None,
               default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value:
            problem = "expected a non-empty string" if value is None else f"expected a string, got {value!r}"
            raise self.fail(path, problem)
        if choices and value not in choices:
            raise self.fail(path, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def number(self, data: dict, key: str, path: str, minimum: float = 0.0) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(path, f"expected a number >= {minimum:g}, got {value!r}")
        return float(value)

    def ints(self, data: dict, key: str, path: str, minimum: int = 1, default: tuple[int, ...] = ()) -> tuple[int, ...]:
        value = data.get(key, list(default))
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum
                                              for v in value):
            raise self.fail(path, f"expected a list of integers >= {minimum}, got {value!r}")
        return tuple(value)

    def strings(self, data: dict, key: str, path: str, choices: tuple[str, ...], default: tuple[str, ...]
                ) -> tuple[str, ...]:
        value = data.get(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or any(not isinstance(v, str) for v in value):
            raise self.fail(path, f"expected a list of strings, got {value!r}")
        unknown = [v for v in value if v not in choices]
        if unknown:
            raise self.fail(path, f"{', '.join(map(repr, unknown))} not among {', '.join(choices)}")
        return tuple(value)


def parse_profile(data: dict[str, Any], source: str) -> Profile:
    r = _Reader(source)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise r.fail(unknown[0], f"unknown key; allowed: {', '.join(sorted(_TOP_KEYS))}")
    cpu = r.table(data, "cpu", {"cores", "isa"})
    server = r.table(data, "server", {"cores"})
    loadgen = r.table(data, "loadgen", {"cores"})
    capacity = r.table(data, "capacity", {"latency_budget_ms", "target_rps"})
    cores = r.ints(cpu, "cores", "cpu.cores", default=(1,))
    if len(cores) != 1:
        raise r.fail("cpu.cores", f"expected one integer, got {cpu.get('cores')!r}")
    raw_targets = data.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise r.fail("targets", "expected at least one [[targets]] table")
    return Profile(
        name=r.string(data, "name", "name"),
        description=r.string(data, "description", "description", default="(no description)"),
        device=r.string(data, "device", "device", DEVICES, default="cpu"),
        cores=cores[0],
        isa=r.strings(cpu, "isa", "cpu.isa", ISA, default=("avx2",)) if "isa" in cpu else (),
        targets=tuple(_target(r, t, f"targets[{i}]") for i, t in enumerate(raw_targets)),
        batch_sizes=r.ints(data, "batch_sizes", "batch_sizes", default=(1,)),
        server_cores=r.ints(server, "cores", "server.cores", minimum=0),
        loadgen_cores=r.ints(loadgen, "cores", "loadgen.cores", minimum=0),
        cost_per_hour=r.number(data, "cost_per_hour", "cost_per_hour"),
        latency_budget_ms=r.number(capacity, "latency_budget_ms", "capacity.latency_budget_ms"),
        target_rps=r.number(capacity, "target_rps", "capacity.target_rps"),
        source=source,
        recipes=_recipes(r, data.get("recipes", [])),
    )


def _recipes(r: _Reader, value: Any) -> tuple[str, ...]:
    """Recipe texts, parsed now so a typo or an unknown pass fails when the profile loads."""
    from mcbench.optimizer.passes import pass_record

    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise r.fail("recipes", f"expected a list of recipe strings, got {value!r}")
    for i, text in enumerate(value):
        try:
            for step in parse_named_recipe(text).steps:
                pass_record(step.name)
        except RecipeError as exc:
            raise r.fail(f"recipes[{i}]", str(exc)) from None
    return tuple(value)


def _target(r: _Reader, data: Any, path: str) -> RuntimeTarget:
    if not isinstance(data, dict):
        raise r.fail(path, "expected a table")
    unknown = sorted(set(data) - _TARGET_KEYS)
    if unknown:
        raise r.fail(f"{path}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(_TARGET_KEYS))}")
    runtime = r.string(data, "runtime", f"{path}.runtime", ("onnxruntime", "openvino", "torch"))
    streams = r.ints(data, "streams", f"{path}.streams") if "streams" in data else ()
    pin = data.get("pin_threads")
    if pin is not None and not isinstance(pin, bool):
        raise r.fail(f"{path}.pin_threads", f"expected true or false, got {pin!r}")
    return RuntimeTarget(
        runtime=runtime,
        providers=r.strings(data, "providers", f"{path}.providers", ORT_PROVIDERS, ("CPUExecutionProvider",)),
        device=r.string(data, "device", f"{path}.device", OV_DEVICES, default="CPU"),
        hints=r.strings(data, "hints", f"{path}.hints", OV_HINTS, ("LATENCY",)),
        streams=streams[0] if streams else None,
        precision=r.string(data, "precision", f"{path}.precision", OV_PRECISIONS, default="f32"),
        threads=r.ints(data, "threads", f"{path}.threads"),
        pin_threads=pin,
    )


def load_profile(path: Path) -> Profile:
    path = Path(path)
    try:
        data = toml_data(read_bytes(path, "profile"), str(path))
    except FileError as exc:
        raise ProfileError(str(exc).replace(": no such file", ": no such profile file")) from None
    except ParseError as exc:
        raise ProfileError(str(exc)) from None
    return parse_profile(data, str(path))


def profile_paths(directory: Path = PROFILE_DIR) -> dict[str, Path]:
    return {p.stem: p for p in sorted(Path(directory).glob("*.toml"))}


def find_profile(name_or_path: str, directory: Path = PROFILE_DIR) -> Profile:
    """A shipped profile by name, or a profile file by path."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_profile(Path(name_or_path))
    paths = profile_paths(directory)
    if name_or_path not in paths:
        raise ProfileError(f"unknown profile {name_or_path!r}; shipped profiles: {', '.join(paths) or 'none'}")
    return load_profile(paths[name_or_path])


def detect_profile(name: str = "detected") -> str:
    """TOML text for a profile of this machine, from its CPU flags, cores, ORT providers and OpenVINO devices."""
    from mcbench.optimizer.hardware import cpu_info, split_cores, usable_cores

    info = cpu_info()
    cores = usable_cores()
    server, loadgen = split_cores(cores)
    lines = [
        f'name = "{name}"',
        f'description = "detected on {info["cpu_model"]}"',
        'device = "cpu"',
        "batch_sizes = [1]",
        "",
        "[cpu]",
        f"cores = {len(cores)}",
        f"isa = {_toml_list(info['isa'])}",
        "",
        "[server]",
        f"cores = {list(server)}",
        "",
        "[loadgen]",
        f"cores = {list(loadgen)}",
    ]
    providers = [p for p in _ort_providers() if p in ORT_PROVIDERS]
    if providers:
        lines += ["", "[[targets]]", 'runtime = "onnxruntime"', f"providers = {_toml_list(providers)}"]
    for device in _ov_devices():
        lines += ["", "[[targets]]", 'runtime = "openvino"', f'device = "{device}"', 'hints = ["LATENCY"]']
    lines += ["", "[[targets]]", 'runtime = "torch"']
    return "\n".join(lines) + "\n"


def _toml_list(items: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def _ort_providers() -> list[str]:
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except ImportError:
        return []


def _ov_devices() -> list[str]:
    try:
        import openvino

        names = [d.split(".")[0] for d in openvino.Core().available_devices]
        return [d for d in OV_DEVICES if d in names]
    except ImportError:
        return []
