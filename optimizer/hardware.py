"""Facts about the machine this process runs on, which compilation and measurement choices depend on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
             "amx_bf16", "amx_fp16")


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


def split_cores(cores: list[int]) -> tuple[list[int], list[int]]:
    """Server gets the first half, the load generator the rest; on one core they share it."""
    if len(cores) < 2:
        return list(cores), list(cores)
    half = len(cores) // 2
    return cores[:half], cores[half:]
