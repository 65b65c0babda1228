"""Facts about the machine this process runs on, which compilation and measurement choices depend on."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
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
    confirmed = seen_by_cpuid(flags)
    return {"cpu_model": model, "isa": [f for f in ISA_FLAGS if f in confirmed]}


# /proc/cpuinfo's name -> numpy's name for the same CPUID bit (numpy reads CPUID in this process at import)
CPUID_NAMES = {"avx2": "AVX2", "fma": "FMA3", "avx512f": "AVX512F", "avx512_vnni": "AVX512VNNI",
               "avx512_bf16": "AVX512BF16", "avx512_fp16": "AVX512FP16"}


def seen_by_cpuid(flags: set[str]) -> set[str]:
    """The flags this process's CPUID confirms. /proc/cpuinfo describes the machine, CPUID the CPU a process runs
    on; they differ under an emulator (qemu's `-cpu Haswell` on an AVX-512 host). Where CPUID denies a flag
    that /proc/cpuinfo claims, CPUID is trusted, and so are its denials of the flags numpy cannot see."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as cpuid
    except ImportError:  # numpy 1.x keeps it under numpy.core
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as cpuid
        except ImportError:
            return flags
    if not cpuid.get("SSE2"):  # not x86: numpy reports the NEON/VSX families instead
        return flags
    confirmed = {f for f in flags if f not in CPUID_NAMES or cpuid.get(CPUID_NAMES[f])}
    denied = {f for f in flags if f in CPUID_NAMES and not cpuid.get(CPUID_NAMES[f])}
    return confirmed if not denied else {f for f in confirmed if f in CPUID_NAMES}


VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # 8-bit dot products that accumulate in 32 bits
X86_64 = ("x86_64", "amd64", "x64")


@dataclass(frozen=True)
class Int8Numerics:
    """How the INT8 passes quantize weights on this host, and why.

    onnxruntime's u8s8 kernels on x86-64 without VNNI (SSSE3, AVX2, AVX-512) multiply unsigned 8-bit
    activations by signed 8-bit weights with `vpmaddubsw`, which adds each pair of products into a signed
    16-bit lane and saturates there: full-range weights lose whole outputs (0.35 of the output range on a
    2-layer net, measured on an AVX2 EPYC). onnxruntime's documentation prescribes 7-bit weights
    (`reduce_range`) on such hosts, and NNCF's `overflow_fix` does the same for OpenVINO's INT8 kernels.
    With VNNI (or AMX), products accumulate in 32 bits and the full 8-bit range is safe and more precise.
    """

    reduce_range: bool
    why: str

    def record(self) -> dict[str, object]:
        return {"reduce_range": self.reduce_range, "numerics": self.why}


def int8_numerics_for(isa: tuple[str, ...] | list[str], machine: str) -> Int8Numerics:
    """The weight range for INT8 on a CPU with these ISA flags (`cpu_info()["isa"]`) and `platform.machine()`."""
    if machine.lower() not in X86_64:
        return Int8Numerics(False, f"{machine}: not x86-64, whose non-VNNI u8s8 kernels can saturate; full 8-bit "
                                   "weights")
    vnni = [f for f in VNNI_FLAGS if f in isa]
    if vnni:
        return Int8Numerics(False, f"x86-64 with {vnni[0]}: 8-bit products accumulate in 32 bits; full 8-bit "
                                   "weights")
    widest = next((f for f in ("avx512f", "avx2") if f in isa), "SSE")
    return Int8Numerics(True, f"x86-64 {widest} without VNNI: the u8s8 kernels can saturate in 16 bits; 7-bit "
                              "weights (reduce_range), as onnxruntime and NNCF document")


@lru_cache(maxsize=1)
def int8_numerics() -> Int8Numerics:
    """This host's INT8 weight range (`int8_numerics_for` on its /proc/cpuinfo flags)."""
    return int8_numerics_for(cpu_info()["isa"], platform.machine())  # type: ignore[arg-type]


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def split_cores(cores: list[int]) -> tuple[list[int], list[int]]:
    """Server gets the first half, the load generator the rest; on one core they share it."""
    if len(cores) < 2:
        return list(cores), list(cores)
    half = len(cores) // 2
    return cores[:half], cores[half:]
