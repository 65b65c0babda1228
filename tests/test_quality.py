"""One primary quality metric per task, with a direction and a budget, read by every decision.

The case that broke: a real sentence embedder whose static-INT8 variant kept a cosine of 0.44 to the FP32
embeddings was printed as "ok ... 5.75x", with no recommendation and empty Pareto charts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcbench.bench.metrics import fidelity, output_fidelity, resolved_task
from mcbench.config import ConfigError, RunConfig
from mcbench.reports.compare import compare_runs
from mcbench.reports.decide import recommend
from mcbench.reports.decision import frontier_names
from mcbench.reports.gate import budget_checks
from mcbench.reports.gate_budgets import Budget, GateConfig
from mcbench.reports.quality import QualityBudgetError, parse_quality_budget, quality_metric, within_budget
from mcbench.reports.schema import Accuracy, LatencyStats, RunResult, VariantResult
from mcbench.reports.text import summary_table
from tests.conftest import save_graph


def variant(name: str, p50_ms: float, task: str, **metrics: float) -> VariantResult:
    samples = [p50_ms * 1e-3 * (1 + 0.01 * (i % 7)) for i in range(200)]
    return VariantResult(name, "onnxruntime", [], "ok",
                         accuracy=Accuracy("sentences.txt (64 texts)", 64, None, None, 0.1, 0.01, task=task,
                                           metrics=dict(metrics)),
                         latency=LatencyStats.from_seconds(samples))


def embedding_run(**config) -> RunResult:
    variants = [variant("torch-fp32", 22.0, "embedding", cosine_mean=1.0, cosine_min=1.0),
                variant("ort-fp32", 17.0, "embedding", cosine_mean=0.99999, cosine_min=0.99998),
                variant("ort-int8-dynamic", 11.9, "embedding", cosine_mean=0.9921, cosine_min=0.985),
                variant("ort-int8-static", 3.8, "embedding", cosine_mean=0.4412, cosine_min=0.2172)]
    return RunResult("emb", "2026-11-28T00:00:00+00:00", {"name": "minilm"}, {"task": "embedding", **config}, {},
                     variants, baseline="torch-fp32")


def test_an_embedding_run_is_decided_on_cosine_and_a_destroyed_variant_is_over_budget():
    run = embedding_run()
    metric = quality_metric(run)
    assert (metric.key, metric.bound, metric.budget, metric.higher_is_better) == ("cosine_mean", True, 0.99, True)
    assert within_budget(run, run.variant("ort-int8-static")) is False
    rec = recommend(run)
    assert (rec.kind, rec.variant) == ("ship", "ort-int8-dynamic")  # the fastest within cosine_mean >= 0.99
    assert rec.sentences[0].startswith("Ship ort-int8-dynamic: its mean cosine to the baseline is 0.99210, 0.0079 "
                                       "below the baseline torch-fp32 (budget: cosine_mean >= 0.99)")
    assert "ort-int8-static" not in frontier_names(run)  # the destroyed (and fastest) one is no candidate
    assert "ort-int8-dynamic" in frontier_names(run)
    table = summary_table(run).splitlines()
    assert table[0].split()[:3] == ["variant", "status", "cosine"]
    static = next(line for line in table if line.startswith("ort-int8-static"))
    assert static.split()[1:4] == ["over", "budget", "0.4412"]  # never just "ok"
    assert table[-1] == "quality: mean cosine to the baseline; budget cosine_mean >= 0.99"


def test_the_gate_fails_a_variant_over_the_runs_quality_budget():
    run = embedding_run()
    checks = budget_checks(run, GateConfig(budgets=(Budget("ort-int8-*", {"p50_ms": 1000.0}),)))
    quality = {c.name: (c.status, c.message) for c in checks if ": quality" in c.name}
    assert quality == {
        "ort-int8-dynamic: quality cosine_mean >= 0.99": (
            "pass", "cosine_mean 0.9921, budget cosine_mean >= 0.99: within the run's quality budget"),
        "ort-int8-static: quality cosine_mean >= 0.99": (
            "fail", "cosine_mean 0.4412, budget cosine_mean >= 0.99: OVER the run's quality budget"),
    }


def test_compare_reads_the_primary_metric_and_says_when_b_is_over_budget():
    a, b = embedding_run(), embedding_run()
    b.variant("ort-int8-dynamic").accuracy.metrics["cosine_mean"] = 0.97
    cmp = compare_runs(a, b)
    change = next(c for x in cmp.variants if x.name == "ort-int8-dynamic" for c in x.changes
                  if c.figure == "mean cosine to the baseline")
    assert (change.a, change.b, change.change, change.verdict) == ("0.9921", "0.9700", "-0.0221", "less accurate")
    assert change.significance.endswith("; B OVER the budget (cosine_mean >= 0.99)")


def test_a_user_bound_on_any_recorded_metric_becomes_the_primary():
    run = embedding_run(quality_budget="cosine_min>=0.98")
    assert [within_budget(run, v) for v in run.variants] == [True, True, True, False]
    run = embedding_run(quality_budget="cosine_min>=0.99")
    assert recommend(run).variant == "ort-fp32"


@pytest.mark.parametrize(("text", "message"), [
    ("cosine>0.9", "expected a number of points (e.g. 1.5) or METRIC>=VALUE / METRIC<=VALUE"),
    ("cosine_mean>=nan", "expected a number of points"),
    ("cosine_mean>=1e999", "the bound must be a finite number"),
    ("101", "points must be between 0 and 100"),
])
def test_a_bad_quality_budget_says_which_forms_it_takes(text, message):
    import re

    with pytest.raises(QualityBudgetError, match=re.escape(message)):
        parse_quality_budget(text)


def test_an_embedding_budget_in_points_is_refused_with_the_form_to_use():
    with pytest.raises(ConfigError, match=r"give it as cosine_mean>=X \(default cosine_mean>=0.99\)"):
        RunConfig(model="m.onnx", task="embedding", quality_budget="1")


def test_regression_is_relative_error_lower_is_better_in_points_from_the_baseline():
    variants = [variant("torch-fp32", 10.0, "regression", rel_error=0.050),
                variant("ort-int8", 5.0, "regression", rel_error=0.062),
                variant("ort-fp16", 8.0, "regression", rel_error=0.055)]
    run = RunResult("reg", "x", {}, {"task": "regression"}, {}, variants, baseline="torch-fp32")
    metric = quality_metric(run)
    assert (metric.key, metric.higher_is_better, metric.bound) == ("rel_error", False, False)
    assert [within_budget(run, v) for v in variants] == [True, False, True]  # 1.2 and 0.5 points worse
    assert recommend(run).variant == "ort-fp16"


def test_sequence_softmax_outputs_are_scored_by_argmax_agreement_along_the_last_axis():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 40, 6625))
    base = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    noisy = base + rng.normal(0, 2e-5, base.shape)
    m = output_fidelity(noisy, base)
    assert 0.9 < m["argmax_agreement"] <= 1.0 and m["rel_mean_err"] < 0.2
    heatmap = 1 / (1 + np.exp(-rng.standard_normal((4, 1, 8, 8))))  # a sigmoid map: not a distribution
    assert "argmax_agreement" not in output_fidelity(heatmap * 1.01, heatmap)
    both = fidelity([noisy, heatmap * 1.01], [base, heatmap])
    assert both["rel_mean_err"] == pytest.approx(max(both["out0.rel_mean_err"], both["out1.rel_mean_err"]))
    assert both["argmax_agreement"] == both["out0.argmax_agreement"]


def test_auto_task_is_classification_only_for_one_batch_by_classes_output():
    assert resolved_task("auto", [np.zeros((8, 10))]) == "classification"
    assert resolved_task("auto", [np.zeros((8, 40, 6625))]) == "fidelity"
    assert resolved_task("auto", [np.zeros((8, 10)), np.zeros((8, 4))]) == "fidelity"
    assert resolved_task("regression", [np.zeros((8, 40, 5))]) == "regression"


def make_two_output_onnx(path: Path) -> Path:
    """x [1, 6] -> a per-step softmax [1, 3, 4] and a box regression [1, 2]: no classifier."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 12)).astype(np.float32), "W1"),
             numpy_helper.from_array(np.array([1, 3, 4], dtype=np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((6, 2)).astype(np.float32), "W2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["r"]),
             helper.make_node("Softmax", ["r"], ["steps"], axis=-1), helper.make_node("MatMul", ["x", "W2"], ["box"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("steps", TensorProto.FLOAT, [1, 3, 4]),
                               helper.make_tensor_value_info("box", TensorProto.FLOAT, [1, 2])], initializer=inits)
    return save_graph(graph, path)


@pytest.mark.slow
def test_a_two_output_model_without_data_gets_a_per_output_fidelity_decision(tmp_path):
    import json

    model = make_two_output_onnx(tmp_path / "two.onnx")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--quick", "--no-load",
                           "--variants", "ort-int8-dynamic", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    acc = {v["name"]: v["accuracy"] for v in results["variants"]}
    assert {a["task"] for a in acc.values()} == {"fidelity"}
    assert acc["ort-fp32"]["metrics"]["argmax_agreement"] == 1.0 and acc["ort-fp32"]["metrics"]["rel_mean_err"] == 0
    assert set(acc["ort-int8-dynamic"]["metrics"]) >= {"out0.argmax_agreement", "out0.rel_mean_err",
                                                        "out1.rel_mean_err", "argmax_agreement", "rel_mean_err"}
    roles = {name: r["role"] for name, r in acc["ort-int8-dynamic"]["roles"].items()}
    assert roles == {"steps": "sequence", "box": "real"}  # each output judged by what it is
    assert set(acc["ort-int8-dynamic"]["metrics"]) >= {"steps.step_agreement", "steps.sequence_agreement",
                                                        "box.real_kept", "worst_role"}
    assert acc["ort-fp32"]["metrics"]["worst_role"] == 1.0
    assert "worst role" in proc.stdout.splitlines()[0]  # the table's quality column names the metric
    assert ("quality: agreement with the baseline of the worst output, judged by its role; budget at most 1 point "
            "below") in proc.stdout
    assert "output 'steps' (batch axis 0): sequence" in proc.stderr
