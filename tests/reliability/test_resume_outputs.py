"""Issue 28: a resumed run of a model with several outputs judges its candidates on every output, as a fresh run
does; the baseline's outputs are kept whole (work/baseline-outputs.npz), and an older run's .npy of the first
output alone still resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mcbench import screen_stage
from mcbench.cli import main
from tests.reliability.conftest import write_run_file
from tests.test_quality import make_two_output_onnx

CANDIDATE = "ort-int8-dynamic"


def _variant(folder: Path, name: str) -> dict:
    return next(v for v in json.loads((folder / "results.json").read_text())["variants"] if v["name"] == name)


def _run_with_the_candidate_failing(cfg: Path, out: Path) -> None:
    """A run whose candidate fails (its measurement raises), so --resume measures it against the kept baseline."""
    original = screen_stage.measure

    def measure(spec, *args):
        if spec.name == CANDIDATE:
            raise RuntimeError("injected: the candidate's measurement failed")
        return original(spec, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(screen_stage, "measure", measure)
        assert main(["run", "--config", str(cfg), "--out", str(out)]) == 1
    assert _variant(out, CANDIDATE)["status"] == "failed"


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory) -> tuple[Path, Path]:
    """A run file for a two-output model ([1, 3, 4] softmax steps, [1, 2] box), and a fresh run of it."""
    folder = tmp_path_factory.mktemp("two-outputs")
    cfg = write_run_file(folder, make_two_output_onnx(folder / "two.onnx"), [CANDIDATE])
    assert main(["run", "--config", str(cfg), "--out", str(folder / "fresh")]) == 0
    return cfg, folder / "fresh"


def test_a_resumed_run_judges_a_candidate_on_every_output_as_a_fresh_run_does(two_outputs, tmp_path, capsys):
    cfg, fresh = two_outputs
    with np.load(fresh / "work" / "baseline-outputs.npz") as saved:  # every output, in the model's order
        assert [saved[k].shape[1:] for k in sorted(saved.files)] == [(3, 4), (2,)]
    out = tmp_path / "run"
    _run_with_the_candidate_failing(cfg, out)
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0
    assert "ort-fp32: kept (ok) from before" in capsys.readouterr().err  # judged against the kept outputs
    resumed, first = _variant(out, CANDIDATE)["accuracy"], _variant(fresh, CANDIDATE)["accuracy"]
    assert {"out1.rel_mean_err", "box.real_kept", "worst_role"} <= set(first["metrics"])
    assert resumed["metrics"] == first["metrics"]  # the second output's figures and the roles' included
    assert resumed["roles"] == first["roles"]


def test_an_older_runs_first_output_alone_is_not_enough_for_a_multi_output_baseline(two_outputs, tmp_path, capsys):
    """A run made before the .npz kept only the first output: its baseline is measured again, not judged on one."""
    cfg, fresh = two_outputs
    out = tmp_path / "run"
    _run_with_the_candidate_failing(cfg, out)
    saved = out / "work" / "baseline-outputs.npz"
    with np.load(saved) as outputs:
        np.save(out / "work" / "baseline-outputs.npy", outputs["0"])
    saved.unlink()
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0
    assert "ort-fp32: kept" not in capsys.readouterr().err
    assert _variant(out, CANDIDATE)["accuracy"]["metrics"] == _variant(fresh, CANDIDATE)["accuracy"]["metrics"]


def test_an_older_single_output_runs_npy_still_resumes_with_its_baseline_kept(model_dir, tmp_path, capsys):
    cfg = write_run_file(tmp_path, model_dir / "linear.onnx", [CANDIDATE])
    out = tmp_path / "run"
    _run_with_the_candidate_failing(cfg, out)
    saved = out / "work" / "baseline-outputs.npz"
    with np.load(saved) as outputs:
        assert outputs.files == ["0"]
        np.save(out / "work" / "baseline-outputs.npy", outputs["0"])  # what a run before the .npz left
    saved.unlink()
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0
    assert "ort-fp32: kept (ok) from before" in capsys.readouterr().err
    assert _variant(out, CANDIDATE)["accuracy"]["agreement"] is not None


def test_a_cut_short_outputs_file_has_the_baseline_measured_again(two_outputs, tmp_path, capsys):
    cfg, fresh = two_outputs
    out = tmp_path / "run"
    _run_with_the_candidate_failing(cfg, out)
    saved = out / "work" / "baseline-outputs.npz"
    saved.write_bytes(saved.read_bytes()[:200])  # as a disk that filled mid-write would have left it
    stale = out / "work" / ".baseline-outputs.npz.abc123.tmp"  # and what kill -9 in the middle of a write leaves
    stale.write_bytes(b"PK")
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0
    assert not stale.exists()
    assert "ort-fp32: kept" not in capsys.readouterr().err
    assert _variant(out, CANDIDATE)["accuracy"]["metrics"] == _variant(fresh, CANDIDATE)["accuracy"]["metrics"]
    with np.load(saved) as outputs:
        assert len(outputs.files) == 2


@pytest.mark.slow
def test_a_resumed_run_of_a_three_output_torch_factory_judges_its_export_as_a_fresh_run_does(tmp_path, capsys):
    """MTCNN's ONet (tests/torch_models.py:onet; [N, 4] box, [N, 10] landmarks, [N, 2] face score): the torch
    baseline's three outputs are kept, and its ONNX export, measured again on resume, gets the fresh run's
    figures for each of them."""
    args = ["--model", "tests.torch_models:onet", "--input", "x=1,3,48,48", "--quick", "--no-load",
            "--variants", "ort-fp32", "--min-runs", "5", "--min-seconds", "0.05", "--max-seconds", "0.3"]
    fresh, out = tmp_path / "fresh", tmp_path / "run"
    assert main(["run", *args, "--out", str(fresh)]) == 0
    with np.load(fresh / "work" / "baseline-outputs.npz") as saved:
        assert [saved[k].shape[1:] for k in sorted(saved.files)] == [(4,), (10,), (2,)]
    original = screen_stage.measure

    def measure(spec, *rest):
        if spec.name == "ort-fp32":
            raise RuntimeError("injected: the candidate's measurement failed")
        return original(spec, *rest)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(screen_stage, "measure", measure)
        assert main(["run", *args, "--out", str(out)]) == 1
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--allow-code"]) == 0
    assert "torch-fp32: kept (ok) from before" in capsys.readouterr().err
    resumed, first = _variant(out, "ort-fp32")["accuracy"], _variant(fresh, "ort-fp32")["accuracy"]
    assert len(resumed["roles"]) == 3 and resumed["roles"] == first["roles"]
    assert {"out1.rel_mean_err", "out2.rel_mean_err"} <= set(first["metrics"])
    assert resumed["metrics"] == pytest.approx(first["metrics"], rel=1e-6, abs=1e-9)
