"""One decision: the objective, the frontier and the choice are the same in the table, the charts, the words, the
terminal table and MLflow's tags, for every objective; synthetic results, no model."""

from __future__ import annotations

import pytest

from mcbench.base.errors import UserError
from mcbench.base.settings import ConfigError
from mcbench.config import LoadPlan, RunConfig
from mcbench.reports.decide import recommend
from mcbench.reports.decision import OBJECTIVES, decide, frontier_names, objective_of
from mcbench.reports.html import render_report
from mcbench.reports.plots import charts
from mcbench.reports.schema import Accuracy, Capacity, RunResult, VariantResult, load_results, save_results
from mcbench.reports.sections import EXPORT_COLUMNS, table_rows
from mcbench.reports.summary import summary_rows
from mcbench.reports.text import summary_table
from mcbench.tracking_record import parent_record, variant_record
from tests.test_report import latency, load, variant


def disagreeing_run(objective: str | None) -> RunResult:
    """p50 and p99 orders disagree: ort-fp32 has the best median and a fat tail, ort-int8 the thinner tail.

    Capacity and cost follow the tail (a server's p99 budget is what the tail breaks). ort-int8-dynamic is the
    fastest on every figure and over the quality budget (1.5 points down, the budget is 1).
    """
    def cap(rps: float) -> Capacity:
        return Capacity(5.0, rps, "open-loop", 4000.0, None, None, 1.0 / (rps * 3600) * 1e6)

    variants = [
        variant("torch-fp32", 0.975, 1.0, 0.400, 0.900, 240_000, [], runtime="torch", capacity=cap(900.0),
                load=load([(1, 900.0, 2.1)])),
        variant("ort-fp32", 0.975, 1.0, 0.100, 0.600, 220_000, ["export.onnx"], capacity=cap(2000.0),
                load=load([(1, 2000.0, 2.6)])),
        variant("ort-int8", 0.970, 0.99, 0.150, 0.300, 68_000, ["export.onnx", "quant.int8_static"],
                capacity=cap(3000.0), load=load([(1, 3000.0, 1.2)])),
        variant("ort-int8-dynamic", 0.960, 0.98, 0.050, 0.200, 70_000, ["export.onnx", "quant.int8_dynamic"],
                capacity=cap(5000.0), load=load([(1, 5000.0, 0.9)])),
    ]
    return RunResult("r", "2026-12-07T00:00:00+00:00", {"name": "m"}, {"objective": objective} if objective else {},
                     {}, variants, baseline="torch-fp32", objective=objective)


EXPECTED = {  # objective -> (frontier, recommended)
    "p50": ({"ort-fp32"}, "ort-fp32"),  # ort-fp32 dominates the baseline and ort-int8 on the median
    "p99": ({"ort-fp32", "ort-int8"}, "ort-int8"),
    "throughput": ({"ort-fp32", "ort-int8"}, "ort-int8"),
    "cost": ({"ort-fp32", "ort-int8"}, "ort-int8"),
}


def chart_frontiers(run: RunResult) -> tuple[set[str], list[set[str]]]:
    """The objective chart's dotted line, and the diamonds of every tradeoff chart."""
    specs = [c for c in charts(run) if c.id.startswith("pareto")]
    line = {n for t in specs[0].figure["data"] if t["mode"] == "lines" for n in t["meta"]["frontier"]}
    diamonds = [{t["meta"]["variant"] for t in c.figure["data"] if t["mode"] == "markers"
                 and t["marker"]["symbol"] == "diamond"} for c in specs]
    return line, diamonds


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_the_table_the_chart_the_words_and_the_tags_name_the_same_variants(objective):
    run = disagreeing_run(objective)
    front, pick = EXPECTED[objective]
    assert objective_of(run).key == objective
    assert frontier_names(run) == front
    assert {r.name for r in summary_rows(run) if r.on_frontier} == front  # the table's mark
    assert {t.row.name for t in table_rows(run) if t.row.on_frontier} == front
    line, diamonds = chart_frontiers(run)
    assert line == (front if len(front) > 1 else set())  # a line needs two points
    assert all(d <= front for d in diamonds) and diamonds[0] == front  # every chart marks the one frontier
    rec = recommend(run)
    assert (rec.kind, rec.variant) == ("ship", pick) and rec.variant in front
    assert rec.sentences[0].startswith(f"Ship {pick}:")
    assert "of the 2 compiled variants within the budget, and 1 more is over it" in rec.sentences[1]
    assert OBJECTIVES[objective].label in rec.sentences[1]
    notes = {line.split()[0]: line for line in summary_table(run).splitlines()[2:6]}
    assert {name for name, line in notes.items() if "frontier" in line} == front
    assert f"objective: {OBJECTIVES[objective].label} ({objective}); ship {pick}" in summary_table(run)
    assert parent_record(run)[1]["objective"] == objective and parent_record(run)[1]["recommended"] == pick
    tags = {v.name: variant_record(run, v)[1] for v in run.variants}
    assert {n for n, t in tags.items() if t.get("frontier") == "true"} == front
    assert tags[pick]["recommendation"] == "ship"
    page = render_report(run)
    assert f"(--objective {objective})" in page and f"vs {OBJECTIVES[objective].label} (the objective)" in page


def test_the_p50_and_p99_objectives_disagree_on_these_results():
    assert recommend(disagreeing_run("p50")).variant != recommend(disagreeing_run("p99")).variant


def test_a_results_file_without_an_objective_was_decided_on_p99_and_says_so(tmp_path):
    run = disagreeing_run(None)
    assert objective_of(run).key == "p99" and recommend(run).variant == "ort-int8"
    assert "p99: this results file records none" in render_report(run)
    save_results(disagreeing_run("p50"), tmp_path / "results.json")
    back = load_results(tmp_path / "results.json")
    assert back.objective == "p50" and recommend(back).variant == "ort-fp32"
    newer = disagreeing_run("energy")  # from a later mcbench: said, never read as another objective
    with pytest.raises(UserError, match=r"^the results' objective 'energy' is not one of p50, p99, throughput, cost$"):
        render_report(newer)


def error_run() -> RunResult:
    """A regression run: relative error, lower is better; the fast variants have the largest errors (as seen on a
    real model: 0% -> 64% -> 1,355%)."""
    def reg(name: str, err: float, p50: float, recipe: list[str]) -> VariantResult:
        v = variant(name, None, None, p50, p50 * 2, 1000, recipe)
        v.accuracy = Accuracy(None, 100, None, None, err, err, task="regression", metrics={"rel_error": err})
        return v

    variants = [reg("torch-fp32", 0.0, 0.40, []), reg("ort-fp32", 0.004, 0.20, ["export.onnx"]),
                reg("ort-int8", 0.64, 0.10, ["export.onnx", "quant.int8_dynamic"]),
                reg("ort-int4", 13.55, 0.05, ["export.onnx", "quant.int4"])]
    return RunResult("r", "2026-12-07T00:00:00+00:00", {"name": "m"}, {"objective": "p50"}, {}, variants,
                     baseline="torch-fp32", objective="p50")


def test_an_error_metrics_frontier_never_includes_a_variant_over_the_budget():
    run = error_run()
    d = decide(run)
    assert (d.metric.key, d.metric.higher_is_better) == ("rel_error", False)
    assert {v.name for v in d.over} == {"ort-int8", "ort-int4"}
    assert frontier_names(run) == {"torch-fp32", "ort-fp32"}  # quality first, then the faster within budget
    line, diamonds = chart_frontiers(run)
    assert line == {"torch-fp32", "ort-fp32"} and diamonds[0] == line
    chart = charts(run)[0]
    assert chart.figure["layout"]["yaxis"]["autorange"] == "reversed"  # up is better for an error too
    assert "Up and to the left is better" in chart.caption
    assert recommend(run).variant == "ort-fp32"


def test_the_status_column_says_over_budget_in_every_table():
    run = disagreeing_run("p50")
    page = render_report(run)
    row = page.split('data-variant="ort-int8-dynamic"')[1].split("</tr>")[0]
    assert '<span class="status over-budget">over budget</span>' in row
    status = dict(EXPORT_COLUMNS)["status"]
    assert {t.row.name: status(t) for t in table_rows(run)}["ort-int8-dynamic"] == "over budget"
    line = next(x for x in summary_table(run).splitlines() if x.startswith("ort-int8-dynamic"))
    assert line.split()[1:3] == ["over", "budget"]


def many_within(count: int, searched_full: int | None = None) -> RunResult:
    variants = [variant("torch-fp32", 0.975, 1.0, 1.0, 2.0, 1, [], runtime="torch")]
    variants += [variant(f"v{i}", 0.975, 1.0, 0.1 + i / 50, 0.5 + i / 50, 1, ["export.onnx"]) for i in range(count)]
    run = RunResult("r", "c", {}, {"objective": "p50"}, {}, variants, baseline="torch-fp32", objective="p50")
    if searched_full is not None:
        run.search = {"searched": True}
        for i, v in enumerate(variants):
            v.search = {"stage": "time" if i <= searched_full else "screen", "stopped": None}
    return run


def test_the_words_count_what_the_decision_counted():
    rec = recommend(many_within(10))
    assert rec.variant == "v0" and "only" not in " ".join(rec.sentences)
    assert rec.sentences[1] == "It has the lowest in-process p50 latency of the 10 compiled variants within the budget."
    rec = recommend(many_within(10, searched_full=3))
    assert rec.sentences[1] == ("It has the lowest in-process p50 latency of the 3 compiled variants within the budget "
                                "ranked on it; 7 more are within it but were not ranked (7 stopped after screening).")
    rec = recommend(many_within(3, searched_full=1))
    assert rec.sentences[1] == ("It is the only compiled variant within the budget ranked on it; 2 more are within it "
                                "but were not ranked (2 stopped after screening).")
    assert recommend(many_within(1)).sentences[1] == "It is the only compiled variant within the budget."


def test_the_baseline_is_kept_where_no_compiled_variant_beats_it():
    run = many_within(3)
    run.variants[0].latency = latency(0.05, 0.1)
    rec = recommend(run)
    assert (rec.kind, rec.variant) == ("ship", "torch-fp32") and frontier_names(run) == {"torch-fp32"}
    assert rec.sentences[0] == ("Keep the baseline torch-fp32: its in-process p50 latency is 0.050 ms, better than all "
                                "3 compiled variants within the budget ranked on it; the best of them, v0, has 0.100 "
                                "ms (97.50% top-1 accuracy).")
    assert rec.sentences[1] == "3 compiled variants are within the budget."


def test_a_load_objective_without_load_figures_says_so():
    run = many_within(2)
    run.objective = "throughput"
    rec = recommend(run)
    assert rec.kind == "none" and rec.sentences[0] == (
        "No recommendation: no compiled variant within the quality budget has a figure for the objective "
        "(peak HTTP throughput under the p99 budget).")
    assert rec.sentences[1].startswith("Choose another --objective")


def test_the_objective_is_a_declared_setting_with_errors_a_user_can_act_on():
    assert RunConfig().objective == "p50" and RunConfig(objective="p99").to_dict()["objective"] == "p99"
    with pytest.raises(ConfigError, match=r"^objective: 'fastest' is not one of p50, p99, throughput, cost"):
        RunConfig(objective="fastest")
    with pytest.raises(ConfigError, match=r"--objective throughput ranks on the HTTP load test's figures, and "
                                          r"--no-load skips it"):
        RunConfig(objective="throughput", load=None)
    with pytest.raises(ConfigError, match=r"^--objective cost needs a price: --cost-per-hour, or a --profile"):
        RunConfig(objective="cost")
    assert RunConfig(objective="cost", load=LoadPlan(cost_per_hour=1.5)).objective == "cost"


def test_a_run_that_measured_only_its_baseline_keeps_it_and_says_why():
    run = many_within(2)
    for v in run.variants[1:]:
        v.status, v.latency, v.error = "skipped", None, "not tried: the 0 s time budget was half spent"
    rec = recommend(run)
    assert (rec.kind, rec.variant) == ("ship", "torch-fp32")
    assert rec.sentences[0] == ("Keep the baseline torch-fp32: no compiled variant was measured; its in-process p50 "
                                "latency is 1.00 ms.")


def test_the_python_api_decides_on_the_recorded_objective_or_the_one_asked(tmp_path):
    import mcbench
    from mcbench.reports.decision import ObjectiveError

    save_results(disagreeing_run("p50"), tmp_path / "results.json")
    assert mcbench.recommend(tmp_path / "results.json").variant == "ort-fp32"
    assert mcbench.recommend(tmp_path / "results.json", objective="p99").variant == "ort-int8"
    with pytest.raises(ObjectiveError, match=r"^objective 'fast' is not one of p50, p99, throughput, cost$"):
        mcbench.recommend(tmp_path / "results.json", objective="fast")
    assert mcbench.run_config(objective="throughput").objective == "throughput"


def test_a_candidate_the_search_stopped_is_never_marked_frontier():
    """Seen on a real model: the table marked 'frontier' a variant the search had stopped as 'cannot reach the
    frontier' (its 3 s screening p99 happened to be low)."""
    run = many_within(4, searched_full=2)  # torch-fp32, v0, v1 timed in full; v2, v3 screened
    run.variants[-1].latency = latency(0.01, 0.02)  # a screening series that reads faster than everything
    run.variants[-1].search["stopped"] = "cannot reach the frontier: v0 is surely faster"
    assert "v3" not in frontier_names(run) and frontier_names(run) == {"v0"}
    assert recommend(run).variant == "v0" and all(not r.on_frontier for r in summary_rows(run) if r.name == "v3")


def test_the_baseline_stands_where_the_search_stopped_every_compiled_variant_within_budget():
    """A compiled variant within budget that the search stopped after screening (the baseline surely faster) is not
    ranked; the baseline is kept, and the words say the search stopped it rather than that nothing was measured."""
    run = many_within(1, searched_full=0)  # torch-fp32 timed in full; v0 screened, then stopped
    run.variants[1].search["stopped"] = "cannot reach the frontier: torch-fp32 is surely faster"
    rec = recommend(run)
    assert (rec.kind, rec.variant) == ("ship", "torch-fp32")
    assert rec.sentences[0].startswith("Keep the baseline torch-fp32: its in-process p50 latency is ")
    assert "1 compiled variant is within the budget, and the search stopped it before its full timing" in \
        rec.sentences[0]
