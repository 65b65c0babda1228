"""No model, variant or recipe name can steer a folder outside the run root; untrusted text in the report is escaped."""

from __future__ import annotations

import json
import shutil

import pytest

from mcbench.cli import main
from mcbench.run_state import RunPaths, safe_name
from mcbench.runguard import OutputError
from tests.reliability.conftest import write_run_file


@pytest.mark.parametrize(("name", "safe"), [
    ("../../etc", "etc"), ("..", "model"), ("/abs/path", "abs_path"), ("a/../../b", "a_.._.._b"),
    ("x86:ort-fp32", "x86_ort-fp32"), ("", "model"), ("quant.int8(x='../..')", "quant.int8_x")])
def test_safe_name_keeps_names_to_one_component(name, safe):
    assert safe_name(name) == safe
    assert "/" not in safe_name(name) and safe_name(name) not in ("", ".", "..")


def test_run_paths_stay_inside_the_root(tmp_path):
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    for folder in (paths.work("../../../etc"), paths.artifacts(("../../x", "..")), paths.work("..")):
        assert folder.resolve().is_relative_to(paths.root.resolve())
    with pytest.raises(OutputError, match="resolves outside the run folder"):
        paths.inside(paths.root / ".." / "elsewhere")


def test_run_paths_refuse_a_symlinked_work_folder(tmp_path):
    paths = RunPaths(tmp_path / "run")
    (paths.root / "work").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (paths.root / "work" / "v").symlink_to(tmp_path / "outside")
    with pytest.raises(OutputError, match="resolves outside the run folder"):
        paths.work("v")


def test_a_model_named_dotdot_cannot_steer_the_run_folder(tmp_path, model_dir, monkeypatch):
    """`mcbench run` without --out names the folder after the model: `..onnx` (stem '..') stays under runs/."""
    model = tmp_path / "models" / "..onnx"
    model.parent.mkdir()
    shutil.copy(model_dir / "linear.onnx", model)
    cfg = write_run_file(tmp_path, model, [])
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", "--config", str(cfg)]) == 0
    runs = list((work / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-model")
    assert sorted(p.name for p in work.iterdir()) == ["runs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "models", "run.toml"]
    data = json.loads((runs[0] / "results.json").read_text())
    assert data["variants"][0]["status"] == "ok"


def test_untrusted_text_in_the_report_is_escaped(tmp_path):
    """A child's stderr, a model name and an error are data from outside: none becomes markup."""
    from mcbench.reports.html import write_report
    from mcbench.reports.schema import RunResult, VariantResult

    attack = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    failed = VariantResult(attack, "onnxruntime", [], "failed", error=f"crashed: {attack}", exit_status=-11,
                           stderr_tail=attack)
    run = RunResult("r", "2026-01-01T00:00:00", {"name": attack}, {}, {}, [failed], warnings=[attack])
    html = write_report(run, tmp_path / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
