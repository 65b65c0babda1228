"""Issue 32, M1 and M14: budgets on metrics a run cannot record, and the Python API's bad arguments.

Each is a `mcbench.UserError` with the CLI's one line, raised before any work (no run folder).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import mcbench
from mcbench.cli import main
from mcbench.reports.schema import save_results
from tests.conftest import make_linear_onnx
from tests.reliability.test_bad_inputs import _one_line
from tests.test_report import sample_run


@pytest.fixture
def model(tmp_path) -> Path:
    return make_linear_onnx(tmp_path / "m.onnx")


@pytest.mark.parametrize(("budget", "message"), [
    ("bogus>=1", "a classification or fidelity (--task auto) run does not record 'bogus' (it records agreement, "
                 "argmax_agreement, rel_max_err, rel_mean_err, top1, top5; a --metric function adds its own)"),
    ("top1>=0.9", "top1 needs labels (a --dataset with 'labels', or --labels), and this run has none"),
    ("cosine_mean>=0.99", "a classification or fidelity (--task auto) run does not record 'cosine_mean' (it "
                          "records agreement, argmax_agreement, rel_max_err, rel_mean_err, top1, top5; a --metric "
                          "function adds its own)"),
])
def test_m1_a_budget_on_a_metric_the_run_cannot_record_is_refused_first(tmp_path, capsys, model, budget, message):
    out = tmp_path / "run"
    assert main(["run", "--model", str(model), "--quality-budget", budget, "--out", str(out)]) == 2
    assert _one_line(capsys) == f"mcbench: --quality-budget {budget}: {message}"
    assert not out.exists()
    with pytest.raises(mcbench.UserError, match="--quality-budget"):
        mcbench.run(model, quality_budget=budget, out=out)


def test_m1_budgets_the_run_records_are_taken(model, tmp_path):
    from mcbench.api import run_config

    for budget in ("agreement>=0.9", "out0.rel_mean_err<=0.1", "rel_mean_err<=0.05", "2"):
        assert run_config(model, quality_budget=budget).quality_budget == budget
    assert run_config(model, task="regression", quality_budget="rel_error<=0.1").quality_budget
    assert run_config(model, task="embedding", quality_budget="cosine_min>=0.9").quality_budget
    data = tmp_path / "d.npz"
    assert run_config(model, dataset=data, quality_budget="top1>=0.9").quality_budget  # labels may be in it


@pytest.fixture
def results(tmp_path) -> Path:
    path = tmp_path / "results.json"
    save_results(sample_run(), path)
    return path


def test_m14_gate_without_budgets_or_baseline_is_a_user_error(results):
    with pytest.raises(mcbench.UserError, match=r"^gate needs budgets, a baseline or both$"):
        mcbench.gate(results)
    with pytest.raises(mcbench.UserError, match=r"^remeasure N needs 5 <= N <= 1000 rounds and a baseline$"):
        mcbench.gate(results, baseline=results, remeasure="5")


def test_m14_a_string_where_a_list_is_expected_is_one_item(model, tmp_path):
    from mcbench.api import run_config

    config = run_config(model, variants="ort-fp32", profiles="local-2core-avx2", recipes="export.onnx")
    assert (config.variants, config.profiles, config.recipes) == \
        (("ort-fp32",), ("local-2core-avx2",), ("export.onnx",))
    config = run_config(model, inputs="x=1,4")
    assert [(name, spec.shape) for name, spec in config.inputs.items()] == [("x", (1, 4))]
    assert run_config(model, inputs=["x=1,4"]).inputs == config.inputs == run_config(model, inputs={"x": "1,4"}).inputs


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"time_budget": "60"}, "mcbench.run: keyword 'time_budget': expected a number, got a string '60'"),
    ({"variants": 3}, "mcbench.run: keyword 'variants': expected a list, got an integer 3"),
    ({"variants": ["ort-fp32", 3]}, "mcbench.run: keyword 'variants': expected a list of non-empty strings, got an "
                                    "integer 3"),
    ({"inputs": 5}, r"mcbench.run: keyword 'inputs': expected a list of strings NAME=D1,D2,...\[:DTYPE\[:LOW-HIGH\]\] "
                    "or a table NAME = 'D1,D2,...'"),
])
def test_m14_wrong_types_are_user_errors_before_any_work(model, tmp_path, kwargs, message):
    with pytest.raises(mcbench.UserError, match=f"^{message}$"):
        mcbench.run(model, out=tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()
