"""INT8 weights fitted to the host's ISA: 7-bit where onnxruntime's u8s8 kernels can saturate (x86-64 without
VNNI), full 8-bit where products accumulate in 32 bits.

The choice is tested on flag sets of real CPUs; the reason for it is shown on the kernels themselves by running
the same quantized files on an emulated Haswell (AVX2 and FMA, no VNNI, no AVX-512) with qemu's user-mode
emulator, which onnxruntime's CPU dispatch sees through CPUID. `make test` installs qemu-user where it can.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcbench.optimizer.artifact import generated_inputs
from mcbench.optimizer.hardware import int8_numerics, int8_numerics_for
from mcbench.optimizer.passes import PassContext, apply_passes
from tests.test_prepare import _artifact, make_paddle_like_onnx

EPYC_ZEN1 = ("avx2", "fma")  # the host where the INT8 tests failed before: 0.35 of the output range
SKYLAKE_SP = ("avx2", "fma", "avx512f")
CASCADE_LAKE = ("avx2", "fma", "avx512f", "avx512_vnni")
ALDER_LAKE = ("avx2", "fma", "avx_vnni")
SAPPHIRE_RAPIDS = ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_int8")


@pytest.mark.parametrize(("isa", "machine", "reduced", "why"), [
    (EPYC_ZEN1, "x86_64", True, "x86-64 avx2 without VNNI"),
    (SKYLAKE_SP, "x86_64", True, "x86-64 avx512f without VNNI"),
    ((), "x86_64", True, "x86-64 SSE without VNNI"),
    (CASCADE_LAKE, "x86_64", False, "x86-64 with avx512_vnni"),
    (ALDER_LAKE, "x86_64", False, "x86-64 with avx_vnni"),
    (SAPPHIRE_RAPIDS, "x86_64", False, "x86-64 with avx512_vnni"),
    ((), "aarch64", False, "aarch64: not x86-64"),
])
def test_the_weight_range_follows_the_isa(isa, machine, reduced, why):
    numerics = int8_numerics_for(isa, machine)
    assert numerics.reduce_range is reduced
    assert numerics.why.startswith(why)


@pytest.mark.parametrize("recipe", ["quant.int8_dynamic", "quant.int8_static",
                                    "quant.int8_dynamic(weight_range=reduced)", "quant.int8_static(weight_range=full)"])
def test_the_pass_record_says_what_was_chosen_and_why(tmp_path, recipe):
    fp32 = _artifact(make_paddle_like_onnx(tmp_path / "m.onnx"))
    record = apply_passes(fp32, (recipe,), PassContext(generated_inputs(fp32.inputs, 8, seed=3), "generated"),
                          tmp_path / "q").passes[-1]
    if "weight_range=" in recipe:
        chosen = recipe.split("=")[1].rstrip(")")
        assert record["reduce_range"] is (chosen == "reduced")
        assert record["numerics"] == f"{chosen} weight range: set in the recipe"
    else:
        assert record["reduce_range"] is int8_numerics().reduce_range
        assert record["numerics"] == int8_numerics().why


ERRORS = """
import json, sys
import numpy as np, onnxruntime as ort
x = np.load(sys.argv[1])["x"]
def run(path):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
ref = run(sys.argv[2])
print(json.dumps({p: float(np.abs(run(p) - ref).max() / np.abs(ref).max()) for p in sys.argv[3:]}))
"""


def _errors(cmd: list[str], inputs: Path, fp32: Path, variants: dict[str, Path]) -> dict[str, float]:
    proc = subprocess.run([*cmd, sys.executable, "-c", ERRORS, str(inputs), str(fp32), *map(str, variants.values())],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    by_path = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: by_path[str(path)] for name, path in variants.items()}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-x86_64 (Debian's qemu-user) is not installed: "
                    "no emulated AVX2 CPU to run the INT8 kernels on (make test installs it)")
def test_full_range_weights_saturate_on_avx2_without_vnni_and_7_bit_weights_do_not(tmp_path):
    """The 2-layer test net's INT8 variants, built once, run natively and on an emulated Haswell: on Haswell
    full-range weights lose a third of the output range (0.35-0.36 measured, as on an AVX2 EPYC), 7-bit
    weights stay within 10% (0.02-0.07), which is what the passes choose for such a host."""
    fp32 = _artifact(make_paddle_like_onnx(tmp_path / "m.onnx"))
    ctx = PassContext(generated_inputs(fp32.inputs, 16, seed=3), "generated")
    variants = {f"{kind}-{rng}": apply_passes(fp32, (f"quant.{kind}(weight_range={rng})",), ctx,
                                              tmp_path / f"{kind}-{rng}").path
                for kind in ("int8_dynamic", "int8_static") for rng in ("full", "reduced")}
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.concatenate([s["x"] for s in generated_inputs(fp32.inputs, 8, seed=5)]))
    haswell = _errors(["qemu-x86_64", "-cpu", "Haswell"], inputs, fp32.path, variants)
    assert haswell["int8_dynamic-full"] > 0.2 and haswell["int8_static-full"] > 0.2, haswell
    assert haswell["int8_dynamic-reduced"] < 0.1 and haswell["int8_static-reduced"] < 0.1, haswell
    assert int8_numerics_for(("avx2", "fma"), "x86_64").reduce_range  # Haswell's flags choose the 7-bit weights
    if int8_numerics().reduce_range is False:  # a VNNI host: full-range weights are safe here, and closer
        native = _errors([], inputs, fp32.path, variants)
        assert native["int8_dynamic-full"] < 0.1 and native["int8_static-full"] < 0.1, native


def test_an_emulated_cpu_is_judged_by_its_cpuid_not_by_the_machine_s_proc_cpuinfo(monkeypatch):
    """qemu's `-cpu Haswell` on an AVX-512 host: /proc/cpuinfo lists the host's flags, CPUID (numpy's view)
    denies AVX-512; the flags numpy cannot see (avx_vnni, amx_int8) are dropped with the rest of the claim."""
    from numpy._core import _multiarray_umath

    from mcbench.optimizer.hardware import seen_by_cpuid

    machine = {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}
    for name in ("AVX2", "FMA3", "SSE2"):
        monkeypatch.setitem(_multiarray_umath.__cpu_features__, name, True)
    for name in ("AVX512F", "AVX512VNNI"):
        monkeypatch.setitem(_multiarray_umath.__cpu_features__, name, False)
    assert seen_by_cpuid(machine) == {"avx2", "fma"}
    for name in ("AVX512F", "AVX512VNNI"):
        monkeypatch.setitem(_multiarray_umath.__cpu_features__, name, True)
    assert seen_by_cpuid(machine) == machine  # they agree: the flags CPUID cannot show are kept
