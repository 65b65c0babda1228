"""The report's serving section and results.json's serving record, from a run whose finalist had a serving search."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mcbench.bench.serving import ServingConfig
from mcbench.reports.html import render_report
from mcbench.reports.schema import ServingSearch, ServingStep, ServingTrial, load_results, save_results
from tests.test_report import sample_run


def searched() -> ServingSearch:
    default, best = ServingConfig(1, 1), ServingConfig(2, 1, max_batch=8)
    trials = [
        ServingTrial(default.label, default.to_dict(), [ServingStep(2, 480.0, 2.0, 9.0), ServingStep(8, 1000.0, 6.0,
                     30.0), ServingStep(32, 1010.0, 25.0, 80.0)], 1010.0, "peak", "saturated"),
        ServingTrial(best.label, best.to_dict(), [ServingStep(2, 400.0, 3.0, 10.0), ServingStep(8, 1400.0, 5.0, 20.0),
                     ServingStep(32, 1450.0, 20.0, 150.0)], 1400.0, "peak", "p99 150.0 ms passed the 100 ms SLO"),
        ServingTrial("1x1t b16/5ms", ServingConfig(1, 1, 16, 5.0).to_dict(), stopped="not tried: budget spent"),
    ]
    return ServingSearch(100.0, trials, best=best.label, best_config=best.to_dict(), best_rps=1400.0,
                         default_rps=1010.0, target_rps=5000.0, replicas=4, cost_per_hour=2.0,
                         cost_per_million=0.0992, budget_s=120.0, elapsed_s=61.0)


def test_serving_search_round_trips_through_results_json(tmp_path: Path) -> None:
    run = sample_run()
    run.variants[0].serving = searched()
    save_results(run, tmp_path / "results.json")
    back = load_results(tmp_path / "results.json").variants[0].serving
    assert back == searched()
    assert json.loads((tmp_path / "results.json").read_text())["variants"][0]["serving"]["trials"][1]["steps"][1] == {
        "users": 8, "throughput_rps": 1400.0, "p50_ms": 5.0, "p99_ms": 20.0, "failures": 0, "stable": None}


def test_report_has_the_serving_table_and_one_curve_per_configuration_tried() -> None:
    run = sample_run()
    run.variants[0].serving = searched()
    page = render_report(run)
    section = page[page.index('<section id="serving">'):]
    section = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section[:section.index("</section>")]))
    assert ("Best: 2x1t b8/2ms, 1,400 req/s with p99 within 100 ms (default configuration: 1,010). 5,000 req/s take "
            "4 replicas, 2.00 an hour. 0.0992 per million requests. 2 of 3 configurations tried in 61 s.") in section
    assert "2x1t b8/2ms (best) 1,400 peak p99 150.0 ms passed the 100 ms SLO" in section
    assert "1x1t b16/5ms - untried not tried: budget spent" in section
    assert 'data-chart="serving-curves"\n       data-variants="2"' in page  # a curve per configuration tried
    charts = json.loads(re.search(r'id="mcbench-charts">(.*?)</script>', page, re.S).group(1))
    curves = charts["serving-curves"]["data"]
    assert [c["meta"]["config"] for c in curves] == ["1x1t nobatch", "2x1t b8/2ms"]  # the untried one has no steps
    assert curves[1]["x"] == [400.0, 1400.0, 1450.0] and curves[1]["y"] == [10.0, 20.0, 150.0]


def test_the_summary_printed_at_the_end_of_a_run_names_the_best_configuration_and_each_tried() -> None:
    from mcbench.reports.text import summary_table

    run = sample_run()
    run.variants[0].serving = searched()
    text = summary_table(run).split("\n\nServing search for ")[1].splitlines()
    assert text[0].startswith(f"{run.variants[0].name} (this machine): Best: 2x1t b8/2ms, 1,400 req/s")
    assert text[2] == "  2x1t b8/2ms                     1,400  peak    p99 150.0 ms passed the 100 ms SLO"


def test_finalists_are_the_recommendation_then_the_frontier_load_tested_in_this_run_at_most_three() -> None:
    from mcbench.serving_stage import serving_finalists

    run = sample_run()  # recommends ort-int8-static (no load test); its frontier: ort-int8-static, ort-fp32
    measured = {v.name for v in run.variants}
    assert serving_finalists(run, measured) == ["ort-fp32"]  # a finalist without a load test is left out
    run.variant("ort-int8-static").load = run.variant("ort-fp32").load
    assert serving_finalists(run, measured) == ["ort-int8-static", "ort-fp32"]
    assert serving_finalists(run, measured, most=1) == ["ort-int8-static"]
    assert serving_finalists(run, measured - {"ort-int8-static"}) == ["ort-fp32"]  # kept from an earlier run
