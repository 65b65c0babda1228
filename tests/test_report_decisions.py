"""The numbers behind the report's words and marks: recommendation, nearest miss, budget, capacity, charts."""

from __future__ import annotations

import pytest

from mcbench.reports.decide import recommend, recommendations, sensitive_layers
from mcbench.reports.html import render_report
from mcbench.reports.plots import REJECTED_COLOR, ReportError, load_curve_spec, pareto_throughput_chart, plotly_js
from mcbench.reports.quality import shortfall
from mcbench.reports.schema import Capacity, VariantResult
from mcbench.reports.sections import capacity_table, class_deltas, compression_facts, profile_cards, table_rows
from tests.test_report import sample_run, variant


def test_recommends_the_fastest_variant_within_the_budget_in_two_sentences_with_numbers():
    rec = recommend(sample_run())
    assert (rec.kind, rec.variant) == ("ship", "ort-int8-static")
    assert rec.sentences == [
        "Ship ort-int8-static: its top-1 accuracy is 96.90%, 0.60 points below the baseline torch-fp32 "
        "(budget: at most 1 point below the baseline), and its in-process median latency is 0.080 ms, 5.00× faster "
        "than the baseline's 0.400 ms (medians, no raw samples for an interval); p99 0.200 ms over 200 samples "
        "(fewer than 1,000: a rough tail).",
        "It has the lowest in-process p99 latency of the 2 compiled variants within the budget, and 1 more is over it.",
    ]
    assert rec.skipped == [("ov-fp32", "TargetError: openvino is not installed")]


def test_a_tighter_budget_changes_the_choice_and_mentions_load_and_capacity():
    run = sample_run()
    run.config["accuracy_budget"] = 0.5
    run.variant("ort-fp32").capacity = Capacity(5.0, 1500.0, "closed-loop", target_rps=4000.0, replicas=3,
                                                cost_per_hour=1.2, cost_per_million=0.0741)
    rec = recommend(run)
    assert rec.variant == "ort-fp32"
    assert rec.sentences[1] == ("It is the only compiled variant within the budget, and 2 more are over it; under "
                                "HTTP load it reached 3,100 req/s at 4 users, and serving 4,000 req/s under a p99 of "
                                "5 ms takes 3 replicas at 1.20 per hour.")


def _missing_run():
    run = sample_run()
    run.variant("ort-fp32").accuracy.top1 = 0.95  # 2.5 points down
    run.config["accuracy_budget"] = 0.5  # int8-static loses 0.6, dynamic 1.4
    return run


def test_nearest_miss_names_the_closest_variant_how_far_it_misses_and_the_sensitive_layers():
    run = _missing_run()
    run.variant("ort-int8-static").passes = [
        {"pass": "quant.int8_static", "sensitivity": {"conv1": 0.8, "fc": 0.1, "conv2": 0.5, "conv3": 0.2}}]
    rec = recommend(run)
    assert (rec.kind, rec.variant) == ("nearest-miss", "ort-int8-static")
    assert rec.sentences[0] == ("No compiled variant meets the quality budget (at most 0.5 points below the "
                                "baseline): all 3 compiled variants measured miss it; the nearest miss is "
                                "ort-int8-static, 0.60 points below the baseline torch-fp32 (96.90% top-1 accuracy), "
                                "0.10 points over the budget.")
    assert rec.sensitive.layers == ["conv1", "conv2", "conv3"]
    assert rec.sentences[1].startswith("The most sensitive layers are conv1, conv2, conv3 (by the per-layer")


def test_nearest_miss_without_per_layer_data_says_so_instead_of_inventing_layers():
    rec = recommend(_missing_run())
    assert rec.kind == "nearest-miss" and rec.sensitive.layers == []
    assert rec.sentences[1] == ("Which layers cost the accuracy is unknown: the run recorded no per-layer sensitivity "
                                "for this variant.")


def test_layers_kept_in_float_stand_in_for_sensitivity_and_show_in_details():
    v = sample_run().variant("ort-int8-static")
    v.passes = [{"pass": "quant.int8_static", "layers_in_float": ["fc2", "conv1"]},
                {"pass": "prune.magnitude", "sparsity": 0.5, "removed_channels": 12}]
    assert sensitive_layers(v).layers == ["fc2", "conv1"]
    facts = compression_facts(v)
    assert facts.layers_in_float == ["fc2", "conv1"]
    assert [(kv.key, kv.value) for kv in facts.pruning] == [("sparsity", "0.5"), ("removed_channels", "12")]


def test_drop_points_and_budget_column():
    run = sample_run()
    assert shortfall(run, run.variant("ort-int8-dynamic")) == pytest.approx(1.4)
    rows = {t.row.name: t for t in table_rows(run)}
    assert (rows["ort-int8-dynamic"].drop.text, rows["ort-int8-dynamic"].budget) == ("+1.40", "over")
    assert (rows["ort-fp32"].drop.text, rows["ort-fp32"].budget) == ("0.00", "within")
    assert rows["ov-fp32"].budget == "n/a"


def test_rejected_variants_are_grey_and_the_throughput_frontier_is_computed():
    chart = pareto_throughput_chart(sample_run())
    marks = {t["meta"]["variant"]: t for t in chart.figure["data"] if t["mode"] == "markers"}
    assert set(marks) == {"torch-fp32", "ort-fp32", "ort-int8-dynamic"}  # int8-static was not load-tested
    assert marks["ort-int8-dynamic"]["marker"]["color"] == REJECTED_COLOR
    assert "over the budget (at most 1 point below the baseline)" in marks["ort-int8-dynamic"]["text"][0]
    assert [n for n, t in marks.items() if t["marker"]["symbol"] == "diamond"] == ["ort-fp32"]
    assert "ort-int8-static" in chart.note and "ov-fp32" in chart.note


def test_load_curves_draw_three_percentiles_per_variant_and_the_budget_line():
    run = sample_run()
    spec = load_curve_spec(run)
    assert spec.variants == ["torch-fp32", "ort-fp32", "ort-int8-dynamic"]
    assert len(spec.figure["data"]) == 9 and sum(t["showlegend"] for t in spec.figure["data"]) == 3
    assert spec.figure["layout"]["shapes"] == [] and "no p99 latency budget" in spec.note
    run.variant("ort-fp32").capacity = Capacity(4.0, 2900.0, "closed-loop")
    shapes = load_curve_spec(run).figure["layout"]["shapes"]
    assert [(s["y0"], s["y1"]) for s in shapes] == [(4.0, 4.0)]


def test_capacity_table_marks_the_recommended_variant():
    run = sample_run()
    run.variant("ort-int8-static").capacity = Capacity(5.0, 2000.0, "open-loop", 5000.0, 3, 0.9, 0.125)
    run.variant("torch-fp32").capacity = Capacity(5.0, None, "open-loop", 5000.0, None, None, None)
    table = capacity_table(run)
    rows = {r.variant: r for r in table.rows}
    assert rows["ort-int8-static"].is_recommended and not rows["torch-fp32"].is_recommended
    assert (rows["ort-int8-static"].replicas.text, rows["ort-int8-static"].cost_per_million.text) == ("3", "0.12")
    assert rows["torch-fp32"].max_rps.text == "n/a"
    assert table.missing == ["ort-fp32", "ort-int8-dynamic"]


def test_per_class_deltas_against_the_baseline():
    run = sample_run()
    run.variant("torch-fp32").accuracy.per_class = {"0": 1.0, "1": 0.9, "10": 0.95, "2": 0.8}
    run.variant("ort-int8-static").accuracy.per_class = {"0": 1.0, "1": 0.85, "10": 0.95, "2": 0.9}
    deltas = class_deltas(run, run.variant("ort-int8-static"))
    assert [(d.label, d.delta, d.worse) for d in deltas] == [
        ("0", "0.00", False), ("1", "-5.00", True), ("2", "+10.00", False), ("10", "0.00", False)]
    assert class_deltas(run, run.variant("torch-fp32")) == []
    page = render_report(run)
    assert "Per-class top-1 against the baseline" in page and 'class="num worse">-5.00<' in page


def profile_run():
    run = sample_run()
    base = run.variants[0]
    a = [variant("cpu-small:ort-fp32", 0.975, 1.0, 0.2, 0.5, 1, ["export.onnx"], profile="cpu-small"),
         variant("cpu-small:ort-int8", 0.97, 0.99, 0.1, 0.3, 1, ["export.onnx", "quant.int8_static"],
                 profile="cpu-small", capacity=Capacity(5.0, 800.0, "closed-loop", 2000.0, 3, 0.3, 0.1))]
    b = [VariantResult("gpu-t4:ort-cuda", "onnxruntime", ["export.onnx"], "skipped", profile="gpu-t4",
                       error="CUDAExecutionProvider is not available on this machine")]
    run.variants = [base, *a, *b]
    return run


def test_several_profiles_get_one_recommendation_each_side_by_side():
    run = profile_run()
    recs = {r.profile: r for r in recommendations(run)}
    assert list(recs) == ["cpu-small", "gpu-t4"]
    assert (recs["cpu-small"].kind, recs["cpu-small"].variant) == ("ship", "cpu-small:ort-int8")
    assert recs["gpu-t4"].kind == "none"
    assert recs["gpu-t4"].skipped == [("gpu-t4:ort-cuda", "CUDAExecutionProvider is not available on this machine")]
    cards = {c.name: c for c in profile_cards(run)}
    assert ("replicas", "3") in [(kv.key, kv.value) for kv in cards["cpu-small"].capacity]
    assert [(g.reason, g.variants) for g in cards["gpu-t4"].skipped] == [
        ("CUDAExecutionProvider is not available on this machine", ["gpu-t4:ort-cuda"])]
    page = render_report(run)
    assert 'id="profiles"' in page and "CUDAExecutionProvider is not available on this machine" in page
    assert page.count('class="recommend ') == 2


def test_a_missing_chart_library_fails_loudly(monkeypatch):
    import importlib.util

    plotly_js.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(ReportError, match=r"plotly.min.js was not found \(pip install plotly\)"):
            render_report(sample_run())
    finally:
        monkeypatch.undo()
        plotly_js.cache_clear()



def test_details_show_the_operator_profile_as_recorded():
    run = sample_run()
    run.variant("ort-int8-static").op_profile = {"by_op_type_ms": {"ConvInteger": 0.05, "DequantizeLinear": 0.01}}
    page = render_report(run)
    assert "Operator profile" in page and "by_op_type_ms.ConvInteger" in page


def test_open_loop_and_batched_sweeps_are_tabled_and_drawn():
    from dataclasses import replace

    from mcbench.reports.load_view import load_tables, peak_step

    run = sample_run()
    v = run.variant("ort-fp32")
    closed = v.load.steps
    v.load.open_steps = [replace(s, mode="open", offered_rps=r, users=0, p999_ms=9.5, stable=r < 3200,
                                 throughput_rps=r * 0.99) for s, r in zip(closed, (1500.0, 3200.0), strict=True)]
    v.load.open_steps[0] = replace(v.load.open_steps[0], server_timed=900, server_p50_ms=0.75,
                                   server_model_p50_ms=0.5, outside_server_p50_ms=0.25, send_lag_p99_ms=0.125)
    v.load.batched_steps = [replace(closed[0], throughput_rps=2500.0)]
    v.load.batching = {"max_batch": 8, "max_wait_ms": 2.0}
    v.load.stopped = {"open": "p99 over the 100 ms budget at 3,000 req/s"}
    assert peak_step(v.load).offered_rps == 3200.0  # the open loop's top step outran the closed loop
    table = next(t for t in load_tables(run) if t.name == "ort-fp32")
    assert [(r.sweep, r.level.text, r.stable) for r in table.rows][2:] == [
        ("open", "1,500 req/s", "yes"), ("open", "3,200 req/s", "no"), ("batched closed", "1 users", "n/a")]
    assert [r.is_peak for r in table.rows] == [False, False, False, True, False]
    assert [(r.server.text, r.model.text, r.late.text) for r in table.rows][1:4] == [  # where the server said
        ("n/a", "n/a", "n/a"), ("0.750", "0.500", "0.125"), ("n/a", "n/a", "n/a")]
    facts = {kv.key: kv.value for kv in table.facts}
    assert facts["open sweep stopped"] == "p99 over the 100 ms budget at 3,000 req/s"
    assert facts["server dynamic batching"].startswith("max batch 8")
    traces = [t for t in load_curve_spec(run).figure["data"] if t["meta"]["variant"] == "ort-fp32"]
    assert [t["meta"].get("sweep") for t in traces] == [None, None, None, "open loop", "batched, closed"]
    assert traces[3]["x"] == [1485.0, 3168.0] and traces[3]["line"]["dash"] == "longdash"
    page = render_report(run)
    assert "batched closed" in page and "3,200 req/s" in page and "p99.9 ms" in page


def test_load_facts_say_where_the_server_ran_model_calls():
    from mcbench.reports.load_view import load_tables

    run = sample_run()
    run.variant("ort-fp32").load.server_dispatch, run.variant("ort-fp32").load.server_model_ms = "inline", 0.0312
    run.variant("ort-int8-dynamic").load.server_dispatch = "thread"
    facts = {t.name: {kv.key: kv.value for kv in t.facts} for t in load_tables(run)}
    assert facts["ort-fp32"]["model calls"] == ("on the server's event loop (warm-up median 0.0312 ms a call): "
                                                "faster than a handoff to a worker thread")
    assert facts["ort-int8-dynamic"]["model calls"] == "in a worker thread"
    assert "model calls" not in facts["torch-fp32"]  # a results file from before the field: nothing claimed
    assert "on the server&#39;s event loop" in render_report(run)


def _with_samples(v: VariantResult, samples_ms: list[float]) -> None:
    from mcbench.reports.schema import LatencyStats

    v.latency = LatencyStats.from_seconds([x / 1000 for x in samples_ms])


def test_a_baseline_outlier_in_the_tail_never_makes_the_headline():
    """The quick demo once said '57.33x faster' from p99s while the medians said 3.46x."""
    import random

    rng = random.Random(1)
    run = sample_run()
    _with_samples(run.variant("torch-fp32"), [0.40 * rng.lognormvariate(0, 0.03) for _ in range(1496)] + [29.0] * 24)
    _with_samples(run.variant("ort-int8-static"), [0.10 * rng.lognormvariate(0, 0.03) for _ in range(1520)])
    first = recommend(run).sentences[0]
    import re

    assert re.search(r"4\.0\d× faster than the baseline's 0\.400 ms \(medians, 95% CI [34]\.\d\d×-4\.\d\d×\)", first)
    assert "57" not in first and "72" not in first and "290" not in first  # no ratio from the 29 ms tail
    assert "p99 0.1" in first and "over 1,520 samples" in first and "rough" not in first


def test_a_speedup_whose_interval_holds_one_is_within_noise():
    import random

    rng = random.Random(2)
    run = sample_run()
    tail = [0.5] * 8  # the baseline's p99 is the worse one, so the p99 objective (this file's) ships int8-static
    _with_samples(run.variant("torch-fp32"), [0.10 * rng.lognormvariate(0, 0.2) for _ in range(400)] + tail)
    _with_samples(run.variant("ort-int8-static"), [0.10 * rng.lognormvariate(0, 0.2) for _ in range(400)])
    first = recommend(run).sentences[0]
    assert first.startswith("Ship ort-int8-static")
    assert "within noise of the baseline's" in first and "faster" not in first
