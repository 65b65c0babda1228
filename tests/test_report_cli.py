"""`mcbench report` re-renders from results.json alone; --accuracy-budget reaches the results; per-class top-1."""

from __future__ import annotations

import numpy as np

from mcbench.bench.accuracy import accuracy_of
from mcbench.cli import build_parser, main, run_config
from mcbench.reports.schema import load_results, save_results
from tests.test_report import sample_run


def test_report_command_rerenders_from_the_results_file_alone(tmp_path, capsys):
    run = sample_run()
    run.config["accuracy_budget"] = 0.5
    save_results(run, tmp_path / "results.json")
    assert main(["report", str(tmp_path / "results.json")]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert ("Ship ort-fp32: its top-1 accuracy is 97.50%, equal to the baseline torch-fp32 (budget: at most 0.5 "
            "points below the baseline)") in page
    assert f"report: {tmp_path / 'report.html'}" in capsys.readouterr().out


def test_accuracy_budget_flag_is_kept_in_the_run_config(capsys):
    config = run_config(build_parser().parse_args(["run", "--quick", "--accuracy-budget", "2.5"]))
    assert config.accuracy_budget == 2.5 and config.to_dict()["accuracy_budget"] == 2.5
    assert run_config(build_parser().parse_args(["run"])).to_dict()["accuracy_budget"] == 1.0
    assert main(["run", "--accuracy-budget", "-1"]) == 2
    assert capsys.readouterr().err == ("mcbench: --accuracy-budget: must be between 0 and 100 percentage points, "
                                       "got -1.0\n")


def test_per_class_top1_for_labelled_classification(tmp_path):
    outputs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    acc = accuracy_of(outputs, outputs, np.array([0, 1, 1, 0]), "toy")
    assert acc.per_class == {"0": 1.0, "1": 0.5}
    assert accuracy_of(outputs, outputs, None, None).per_class == {}
    assert accuracy_of(outputs, outputs, np.array([0.1, 0.2, 0.3, 0.4]), "toy", task="regression").per_class == {}
    run = sample_run()
    run.variants[0].accuracy = acc
    save_results(run, tmp_path / "r.json")
    assert load_results(tmp_path / "r.json").variants[0].accuracy.per_class == {"0": 1.0, "1": 0.5}
