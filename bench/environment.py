"""The machine and software a measurement was taken on, stamped into every results file."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

LIBRARIES = ("mcbench", "torch", "onnx", "onnxruntime", "openvino", "locust", "numpy", "scikit-learn")
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def cpu_info() -> dict[str, object]:
    """CPU model and the ISA flags that decide INT8/BF16 gains, from /proc/cpuinfo where it exists."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {"cpu_model": model, "isa": [f for f in ISA_FLAGS if f in flags]}


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, object]:
    return {
        **cpu_info(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
    }


def split_cores(cores: list[int]) -> tuple[list[int], list[int]]:
    """Server gets the first half, the load generator the rest; on one core they share it."""
    if len(cores) < 2:
        return list(cores), list(cores)
    half = len(cores) // 2
    return cores[:half], cores[half:]
