"""mcbench installs and runs the same way in every install mode a user picks.

A user's `pip install -e .` (setuptools' default editable mode), the strict editable mode, and a built
wheel each get a fresh virtual environment; each then runs a quantized variant through the child-process
path, from a folder outside the checkout, so nothing but the install can supply the import names.
The third-party libraries come from the suite's own environment (a path line, not a reinstall of torch).

The old layout's failure this guards against: onnxruntime.transformers puts a folder holding an
`optimizer.py` on sys.path; a spawned child inherited it, and under the editable finder that file won
over a top-level `optimizer` package (`'optimizer' is not a package`).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import make_linear_onnx

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def fresh_env(where: Path) -> Path:
    """A new virtual environment that sees this suite's third-party packages but not its mcbench."""
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # A .pth line adds the suite's site-packages; the .pth files in it (the suite's own mcbench) are not run.
    (Path(purelib) / "suite_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def clean_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH: a checkout on it would be imported instead of the install."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def pip_install(python: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-build-isolation", "--quiet", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def run_quantized_variant(python: Path, workdir: Path, real: bool = False) -> dict:
    """`mcbench run` with dynamic INT8 (its build and measurement run in children) of a tiny ONNX model, or
    of a real one: PaddleOCR's text-direction CNN (tests/packaged_models.py)."""
    if real:
        from tests.packaged_models import packaged_model

        model, shape = packaged_model("ppocr") / "ch_ppocr_mobile_v2.0_cls_infer.onnx", ["--input", "x=1,3,48,192"]
    else:
        model, shape = make_linear_onnx(workdir / "tiny.onnx"), []
    out = workdir / "run"
    mcbench = python.parent / "mcbench"
    proc = subprocess.run([str(mcbench), "run", "--model", str(model), *shape, "--quick", "--no-load", "--no-cache",
                           "--variants", "ort-int8-dynamic", "--out", str(out)],
                          cwd=workdir, capture_output=True, text=True, timeout=600, env=clean_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((out / "results.json").read_text())


def where_mcbench_lives(python: Path, workdir: Path) -> str:
    code = "import mcbench.optimizer.targets as t, mcbench.optimizer.profiles as p; print(t.__file__); " \
           "print(sorted(p.profile_paths()))"
    proc = subprocess.run([str(python), "-c", code], cwd=workdir, capture_output=True, text=True, check=True,
                          env=clean_env())
    return proc.stdout


# Not setuptools' transitional `compat` mode: it puts the checkout on sys.path, which cannot express package-dir's
# mapping of mcbench.optimizer to optimizer/ (docs/architecture.md, Import names).
@pytest.mark.parametrize("mode", ["default", "strict"])
def test_editable_install_runs_a_quantized_variant_in_its_child(tmp_path: Path, mode: str):
    python = fresh_env(tmp_path / "env")
    settings = [] if mode == "default" else ["--config-settings", f"editable_mode={mode}"]
    pip_install(python, *settings, "-e", str(ROOT))
    work = tmp_path / "work"
    work.mkdir()
    assert "local-2core-avx2" in where_mcbench_lives(python, work)  # the profiles are found
    results = run_quantized_variant(python, work, real=mode == "strict")
    status = {v["name"]: v["status"] for v in results["variants"]}
    assert status == {"ort-fp32": "ok", "ort-int8-dynamic": "ok"}, results["variants"]


def test_wheel_install_ships_every_package_and_the_profiles(tmp_path: Path):
    python = fresh_env(tmp_path / "env")
    pip_install(python, str(built_wheel(tmp_path / "wheels")))
    work = tmp_path / "work"
    work.mkdir()
    located = where_mcbench_lives(python, work)
    assert str(tmp_path / "env") in located and str(ROOT) not in located  # the wheel's copy, not the checkout
    assert "local-2core-avx2" in located
    results = run_quantized_variant(python, work)
    assert {v["name"]: v["status"] for v in results["variants"]} == {"ort-fp32": "ok", "ort-int8-dynamic": "ok"}


def built_wheel(where: Path) -> Path:
    had_build = (ROOT / "build").exists()
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "--wheel-dir", str(where), str(ROOT)], capture_output=True, text=True, timeout=600)
    if not had_build:  # setuptools builds in the checkout's build/: leave the checkout as it was
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = where.glob("mcbench-*.whl")
    return wheel


def test_a_plain_install_reads_results_without_the_runtimes(tmp_path: Path):
    """`pip install mcbench` with no extra, as a CI job that only gates would: no torch, no OpenVINO, no NNCF;
    report, compare, export and gate (no re-measuring) work on a stored results.json, and `run` says which
    extra it needs in one line."""
    work = tmp_path / "work"
    work.mkdir()
    stored = run_quantized_variant(Path(sys.executable), work)  # made by the suite's own, complete install
    assert {v["status"] for v in stored["variants"]} == {"ok"}
    venv.EnvBuilder(with_pip=True).create(tmp_path / "plain")
    python = tmp_path / "plain" / "bin" / "python"
    proc = subprocess.run([python, "-m", "pip", "install", "--quiet", str(built_wheel(tmp_path / "wheels"))],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for heavy in ("torch", "openvino", "nncf", "onnxruntime", "locust"):
        absent = subprocess.run([python, "-c", f"import {heavy}"], capture_output=True, text=True, env=clean_env())
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, heavy
    results = str(work / "run" / "results.json")
    mcbench = str(python.parent / "mcbench")
    commands = {"report.html": ["report", results, "--out"], "compare.html": ["compare", results, results, "--out"],
                "export.csv": ["export", results, "--out"], "junit.xml": ["gate", results, "--baseline", results,
                                                                         "--junit"]}
    for output, args in commands.items():
        proc = subprocess.run([mcbench, *args, str(tmp_path / output)], cwd=work, capture_output=True, text=True,
                              timeout=300, env=clean_env())
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        assert (tmp_path / output).stat().st_size > 0
    proc = subprocess.run([mcbench, "run", "--quick", "--out", str(tmp_path / "demo")], cwd=work,
                          capture_output=True, text=True, timeout=300, env=clean_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1] == ("mcbench run: torch is not installed; it comes with the extra: "
                                            "pip install 'mcbench[torch]' (or 'mcbench[all]')"), proc.stderr
